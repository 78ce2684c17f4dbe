"""The FastAPI app behind `smallvision serve`; see the package docstring."""

from __future__ import annotations

import base64
import binascii
import io
import json
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Request  # at module level: FastAPI resolves the endpoints' annotations here

from smallvision.errors import UsageError

# Decoders allowed for uploads: the common formats only (Pillow knows dozens, some rarely fuzzed),
# and phone photos' HEIC (pillow-heif) and AVIF where their readers are installed (data/formats.py)
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "HEIF", "AVIF")


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 10 * 1024 * 1024  # request body
    max_pixels: int = 50_000_000  # width × height, checked from the header before decoding (a 48-MP phone photo passes)
    max_top_k: int = 20


class BadImage(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def decode_image(data: bytes, max_pixels: int):  # type: ignore[no-untyped-def]
    """Bytes of an uploaded file -> a fully decoded PIL image, or BadImage (4xx) naming the
    problem. The size is read from the header first: a decompression bomb is refused unread.
    The image is turned upright by its EXIF orientation (a phone photo), as training's files are."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from smallvision.data import formats

    allowed = formats.pil_formats(FORMATS)  # registers the HEIF opener; only the readers installed
    if not data:
        raise BadImage(400, "empty upload: send an image file (PNG, JPEG, ...)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning: our own cap decides
        try:
            im = Image.open(io.BytesIO(data), formats=allowed)
        except UnidentifiedImageError:
            raise BadImage(400, f"not an image this server reads ({', '.join(allowed)})") from None
        except Image.DecompressionBombError:
            raise BadImage(413, f"image has too many pixels (limit {max_pixels:,})") from None
        except Exception as e:  # a malformed header
            raise BadImage(400, f"unreadable image ({type(e).__name__})") from None
        w, h = im.size
        if w * h > max_pixels:
            raise BadImage(413, f"image is {w} × {h} = {w * h:,} pixels; the limit is {max_pixels:,}")
        if w < 1 or h < 1:
            raise BadImage(400, "image has no pixels")
        try:
            im.load()
        except Exception as e:  # truncated or corrupt data
            msg = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            raise BadImage(400, f"corrupt or truncated image ({msg})") from None
    return ImageOps.exif_transpose(im)


class _BodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes`: by its Content-Length before a byte of it is
    read (the HTTP server holds the body to that length), or, for a body streamed without a length,
    as soon as the running count passes the limit (such a body is buffered, at most `max_bytes`)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def _reply_413(self, send: Any) -> None:
        body = json.dumps({"detail": f"upload too large: the limit is {self.max_bytes:,} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                return await self._reply_413(send)
            return await self.app(scope, receive, send)
        chunks, seen, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.max_bytes:
                return await self._reply_413(send)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        return await self.app(scope, replay, send)


def _page() -> str:
    return resources.files("smallvision.serve").joinpath("page.html").read_text(encoding="utf-8")


REVIEW_ROWS = 100  # rows of each review list the page shows


def review_lists(checkpoint: str | Path, review: list[str | Path] | None = None) -> list[dict[str, Any]]:
    """The lists the page shows for review (read-only): the run's own `suggest` output
    (RUN/suggestions/suggestions.csv) when there is one, and each `review` path, a suggestions.csv,
    a `labels` label_ranking.csv or a folder holding one. Their first REVIEW_ROWS rows each."""
    import csv

    run = Path(checkpoint)
    own = (run if run.is_dir() else run.parent) / "suggestions" / "suggestions.csv"
    paths = [own] if own.is_file() else []
    for item in review or []:
        p = Path(item).expanduser()
        if p.is_dir():
            found = [p / n for n in ("suggestions.csv", "label_ranking.csv") if (p / n).is_file()]
            if not found:
                raise UsageError(f"--review {item}: no suggestions.csv or label_ranking.csv in this folder")
            paths += found
        elif p.is_file():
            paths.append(p)
        else:
            raise UsageError(f"--review {item}: no such file or folder")
    lists = []
    for p in paths:
        try:
            with open(p, newline="", encoding="utf-8-sig") as fh:  # -sig: a spreadsheet's byte-order mark
                reader = csv.DictReader(fh)
                head = reader.fieldnames or []
                rows = list(reader)
        except (UnicodeDecodeError, csv.Error) as e:
            raise UsageError(f"--review {p}: not a readable CSV ({type(e).__name__})") from None
        if {"given", "suggested", "label_quality"} <= set(head):
            kind, title = "labels", "Most doubtful labels (given → suggested)"
        elif {"predicted", "probability", "suggested"} <= set(head):
            kind, title = "suggestions", "Label these next (the model's two best guesses)"
            rows = [r for r in rows if r.get("suggested") != "False" and r.get("file")]  # suggest's: the n chosen
        else:
            raise UsageError(f"--review {p}: not a suggestions.csv or label_ranking.csv (its columns: {', '.join(head[:8])})")
        lists.append({"kind": kind, "title": title, "source": str(p), "rows": rows[:REVIEW_ROWS]})
    return lists


def _web_runtime_installed() -> bool:
    from smallvision.web import ort_web_dir

    try:
        ort_web_dir()
        return True
    except UsageError:
        return False


def _web_folder_zip(checkpoint: str | Path) -> bytes:
    """`export --format web` of `checkpoint` into a temporary folder, zipped in memory."""
    import io
    import tempfile
    import zipfile

    from smallvision.web import export_web

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(export_web(checkpoint, Path(tmp) / "web").path)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(folder.iterdir()):
                z.write(f, f"web/{f.name}")
        return buf.getvalue()


def create_app(checkpoint: str | Path, limits: Limits | None = None, device: str = "auto",
               threads: int = 0, review: list[str | Path] | None = None):  # type: ignore[no-untyped-def]
    """The app for one model: a run folder, a .safetensors checkpoint or an exported .onnx file.
    `threads` > 0 sets the threads one prediction may use (PyTorch's, process-wide, and
    onnxruntime's); requests run side by side in the server's thread pool. `review`: lists shown
    on the page for review (review_lists)."""
    import threading

    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from fastapi_offline import FastAPIOffline

    from smallvision.modelfile import preprocessing
    from smallvision.predict import Predictor

    limits = limits or Limits()
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    lists = review_lists(checkpoint, review)
    predictor = Predictor.from_checkpoint(checkpoint, device, onnx_threads=threads)
    c, h, w = predictor.info.input_shape
    info = {
        "card": predictor.card,
        "classes": predictor.classes,
        "input": {"channels": c, "height": h, "width": w},
        "drawable": c == 1 and max(h, w) <= 64,  # the page offers a canvas for small grayscale models
        "preprocessing": preprocessing(predictor.meta),
        "limits": asdict(limits),
        "source": str(checkpoint),
        "runtime": "onnxruntime" if str(checkpoint).lower().endswith(".onnx") else f"pytorch ({predictor.device})",
    }
    title = f"smallvision · {predictor.card.get('model')} on {predictor.card.get('dataset')}"
    explainer = None
    if not str(checkpoint).lower().endswith(".onnx"):  # heatmaps need the PyTorch model's gradients
        from smallvision.explain import Explainer

        explainer = Explainer(predictor)
    info["explain"] = explainer.methods if explainer else []
    # the same model as a static web page (export --format web), zipped on first request: offered
    # when this is a checkpoint (not an .onnx file) and ONNX Runtime Web is installed here
    info["web_download"] = not str(checkpoint).lower().endswith(".onnx") and _web_runtime_installed()
    web_zip: dict[str, bytes] = {}
    web_lock = threading.Lock()
    explain_lock = threading.Lock()  # attribution hooks are registered on the one shared model
    # the API docs (/docs, /redoc) from Swagger UI / ReDoc files shipped in fastapi-offline: no CDN
    app = FastAPIOffline(title=title, version="1",
                         description="Try a smallvision classifier: POST an image to /predict, or to /explain for "
                                     "a heatmap of where the model looked.")
    page = _page().replace("{{TITLE}}", title)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status)

    async def read_upload(request: Request) -> bytes:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            try:
                form = await request.form(max_files=1, max_fields=4)
            except Exception as e:  # malformed multipart
                raise BadImage(400, f"malformed multipart body ({type(e).__name__})") from None
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise BadImage(400, "multipart body without a file field named 'file'")
            return await upload.read()
        body = await request.body()
        if kind == "application/json":
            try:
                text = json.loads(body)["image"]
                text = text.split(",", 1)[1] if text.startswith("data:") else text  # a data URL too
                return base64.b64decode(text, validate=True)
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError, IndexError):
                raise BadImage(400, 'JSON body must be {"image": "<base64 of an image file>"}') from None
            except binascii.Error:
                raise BadImage(400, "the 'image' field is not valid base64") from None
        return body  # the raw file as the body (curl --data-binary @digit.png)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": predictor.card.get("model")}

    @app.get("/info")
    async def get_info() -> dict[str, Any]:
        return info

    @app.get("/web.zip", summary="The model as a web page",
             description="A zip of `smallvision export --format web`: a static page that runs this model offline "
                         "in any browser (built on the first request, then kept).")
    async def get_web_zip() -> Any:
        if not info["web_download"]:
            return error(404, "no web page for this model here (an .onnx file, or ONNX Runtime Web not installed: "
                              "make setup)")

        def build() -> bytes:
            with web_lock:
                if "zip" not in web_zip:
                    web_zip["zip"] = _web_folder_zip(checkpoint)
                return web_zip["zip"]

        try:
            blob = await run_in_threadpool(build)
        except UsageError as e:
            return error(409, str(e))
        name = f"{predictor.card.get('run') or 'model'}-web.zip"
        return Response(blob, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/review", summary="Lists to review",
             description="The run's label-next suggestions and any `--review` list (doubtful labels), their first "
                         "rows; each row's picture at /review/{list}/{row}.")
    async def get_review() -> dict[str, Any]:
        return {"lists": [{**lst, "rows": [{**r, "image": f"/review/{i}/{j}" if r.get("file") else None}
                                           for j, r in enumerate(lst["rows"])]} for i, lst in enumerate(lists)]}

    @app.get("/review/{li}/{ri}", include_in_schema=False)
    async def review_image(li: int, ri: int) -> Any:
        from fastapi.responses import FileResponse

        from smallvision.data.formats import IMAGE_EXTS

        try:
            path = Path(lists[li]["rows"][ri]["file"]) if li >= 0 and ri >= 0 else None
        except (IndexError, KeyError, TypeError):
            path = None
        # only the image files the lists name, read-only, never sniffed as anything else
        if path is None or path.suffix.lower() not in IMAGE_EXTS or not path.is_file():
            return error(404, "no such review image")
        return FileResponse(path, headers={"X-Content-Type-Options": "nosniff"})

    @app.post("/predict", summary="Classify one image",
              description="Send the image as multipart field `file`, as JSON `{\"image\": base64}`, or as the raw "
                          "body. Answers the top-k classes with probabilities, and for a model with an OOD detector "
                          "its score and `none_of_these` (then `label` is \"none of these\"); `accept` (e.g. 0.99) sets the share "
                          "of the run's validation images accepted.")
    async def predict(request: Request, top_k: int = 5, accept: float | None = None) -> Any:
        t0 = time.perf_counter()
        if not 1 <= top_k <= limits.max_top_k:
            return error(400, f"top_k must be between 1 and {limits.max_top_k}")
        if accept is not None and (predictor.ood is None or not 0 < accept <= 1):
            return error(400, "accept must be in (0, 1]" if predictor.ood else "accept: this model carries no OOD detector")
        try:
            data = await read_upload(request)
            image = await run_in_threadpool(decode_image, data, limits.max_pixels)
        except BadImage as e:
            return error(e.status, e.message)
        (out,) = await run_in_threadpool(predictor.predict, [image], top_k, accept=accept)
        if "error" in out:
            return error(400, f"could not prepare the image: {out['error']}")
        return {"label": out["label"], "probability": out["probability"],
                **({"labels": out["labels"]} if "labels" in out else {}),  # multi-label: every label above its threshold
                # "none of these": the OOD score and whether it is beyond the model's threshold (label is then "none of these")
                **({k: out[k] for k in ("ood_score", "none_of_these", "ood_threshold")} if "ood_score" in out else {}),
                "top_k": [{"label": lbl, "probability": p} for lbl, p in out["top_k"]],
                "size": list(image.size), "ms": round(1000 * (time.perf_counter() - t0), 2)}

    def explain_one(image: Any, method: str) -> tuple[dict[str, Any], Any, Any]:
        with explain_lock:
            (r,) = explainer.explain([image], top_k=1)  # type: ignore[union-attr]
        if "error" in r:
            raise BadImage(400, f"could not prepare the image: {r['error']}")
        name = method if method != "auto" else explainer.methods[-1]  # type: ignore[union-attr]
        return r, name, r["heatmaps"][name]

    @app.post("/explain", summary="Where the model looked",
              description="The same uploads as /predict. `format=png` (default): the image as the model saw it "
                          "with the heatmap over it; `format=json`: the heatmap as an H × W array in [0, 1]. "
                          "`method`: gradcam, occlusion (models with inputs of at most 32 px) or auto (occlusion "
                          "where offered, else Grad-CAM).")
    async def explain(request: Request, method: str = "auto", format: str = "png") -> Any:  # noqa: A002
        if explainer is None:
            return error(400, "heatmaps need the PyTorch model: serve the run folder or its .safetensors, not an ONNX file")
        if method != "auto" and method not in explainer.methods:
            return error(400, f"method must be auto or one of {', '.join(explainer.methods)}")
        if format not in ("png", "json"):
            return error(400, "format must be png or json")
        try:
            data = await read_upload(request)
            image = await run_in_threadpool(decode_image, data, limits.max_pixels)
            r, name, heat = await run_in_threadpool(explain_one, image, method)
        except BadImage as e:
            return error(e.status, e.message)
        if format == "json":
            return {"label": r["label"], "probability": r["probability"], "method": name,
                    "height": int(heat.shape[0]), "width": int(heat.shape[1]),
                    "heatmap": [[round(float(v), 4) for v in row] for row in heat]}
        from smallvision.explain import overlay_image

        buf = io.BytesIO()
        overlay_image(r["input"], heat).save(buf, format="PNG")
        return Response(buf.getvalue(), media_type="image/png",
                        headers={"X-Label": str(r["label"]).encode("ascii", "replace").decode(), "X-Method": name})

    return _BodyLimit(app, limits.max_bytes) if limits.max_bytes else app


@contextmanager
def running(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` from a background thread (a notebook, a test) and yield its base URL;
    port 0 picks a free port."""
    import socket
    import threading

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def serve(checkpoint: str | Path, host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None,
          device: str = "auto", threads: int = 1, log_level: str = "warning",
          review: list[str | Path] | None = None) -> None:
    """Run the server in the foreground (Ctrl-C stops it). One thread per prediction by default:
    one image gains little from more, and concurrent requests then share the cores without
    oversubscribing them (benchmarks/results/serve_load.md: --threads 1 and 2 within 4 % on 2 cores)."""
    import uvicorn

    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0-65535, got {port}")
    if threads < 1:
        raise UsageError(f"--threads must be ≥ 1, got {threads}")
    app = create_app(checkpoint, limits, device, threads, review)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
