"""A web page and JSON API to try a model: `smallvision serve CKPT` (FastAPI + uvicorn).

    from smallvision.serve import create_app
    app = create_app("runs/mnist-fast-.../")          # or an exported model.onnx
    # uvicorn.run(app, host="127.0.0.1", port=8000)

Routes: ``GET /`` the page (a drawing canvas for small grayscale models, file upload, top-k bars,
the model card), ``POST /predict`` (multipart ``file``, JSON ``{"image": base64}``, or the raw image
as the body), ``GET /info``, ``GET /health``, and FastAPI's ``/docs`` and ``/openapi.json``.

Limits (see `Limits`): request bodies above ``max_bytes`` get 413 before they are read; images
are identified from their header and refused above ``max_pixels`` before any pixel is decoded
(Pillow's own bomb guard lets a 9000 × 9000 image through); only common formats are decoded;
anything unreadable is a 400 with a message. Uploads are never pickled or written to disk.
"""

from smallvision.serve.app import Limits, create_app, decode_image, running, serve

__all__ = ["Limits", "create_app", "decode_image", "running", "serve"]
