"""Why a model said what it said: Grad-CAM heatmaps, and occlusion sensitivity for tiny inputs.

    from smallvision.explain import Explainer
    ex = Explainer.from_checkpoint("runs/mnist-fast-.../")
    maps = ex.gradcam(x)                   # (B, H, W) in [0, 1], for the predicted class
    ex.explain_files(["cat.jpg"], "out/")  # one PNG per image + explain.json

Both methods come from Captum (PyTorch's attribution library). Grad-CAM is taken in its
HiResCAM form (Draelos & Carin, 2020): the feature map times its gradient, element by element,
summed over channels (Captum's `LayerGradientXActivation`), where classic Grad-CAM first
averages the gradient over positions. Behind global average pooling the two are the same map
(the gradient is then equal at every position); behind a flattening layer, as in cnn-fast,
the averaged gradient cancels and classic Grad-CAM came out empty on MNIST digits, while this
form keeps each position's own weight. `Occlusion` slides a black window over the image and
records how much the class score drops. The feature map is found from the classifier contract alone (models/base.py:
``features`` then ``head``): the last module inside ``features`` whose output is a 4-D map
larger than 1 × 1 — the map just before global pooling or flattening — so every registered
model works, and ``layer=`` names another. A model with no spatial map (an MLP) gets occlusion
only. Occlusion is added by default for inputs of at most 32 px, where a Grad-CAM map of a few
cells is coarse (at 28 px cnn-fast's last map is 3 × 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from smallvision.errors import UsageError
from smallvision.models.attribution import (  # noqa: F401  (the attribution functions, re-exported)
    TINY,
    cam_layer,
    default_method,
    feature_layers,
    gradcam,
    heatmaps,
    mass_inside,
    no_tta,
    occlusion,
)
from smallvision.runfolder import RunFolder


class Explainer:
    """A trained model with the preprocessing it was trained with, for heatmaps of users' images."""

    def __init__(self, predictor: Any, layer: str | None = None) -> None:
        if not isinstance(predictor.model, nn.Module):
            raise UsageError("explain needs a run folder or a .safetensors checkpoint (an ONNX file has no gradients)")
        self.predictor, self.model, self.layer = predictor, predictor.model, layer
        c, h, w = predictor.info.input_shape
        self.spatial = cam_layer(self.model, layer) is not None
        self.methods = (["gradcam"] if self.spatial else []) + (["occlusion"] if min(h, w) <= TINY or not self.spatial else [])

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", layer: str | None = None) -> Explainer:
        from smallvision.predict import Predictor

        if str(path).lower().endswith(".onnx"):
            raise UsageError(f"{path}: explain needs a run folder or a .safetensors checkpoint (an ONNX file has no "
                             "gradients)")
        return cls(Predictor.from_checkpoint(path, device), layer)

    def heatmaps(self, x: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every method's maps for a batch of model inputs, keyed by method name."""
        x = x.to(self.predictor.device)
        out = {}
        if "gradcam" in self.methods:
            out["gradcam"] = gradcam(self.model, x, target, self.layer).cpu()
        if "occlusion" in self.methods:
            out["occlusion"] = occlusion(self.model, x, target).cpu()
        return out

    def explain(self, images: Sequence[Any], top_k: int = 3, invert: str = "auto", center: str = "auto"
                ) -> list[dict[str, Any]]:
        """Per image: predict's answer plus ``heatmaps`` ({method: (H, W) tensor}) and ``input``
        (the image as the model saw it, 0-1 pixels (C, H, W)); unreadable files carry ``error``."""
        results = self.predictor.predict(images, top_k, invert, center)
        ok = [i for i, r in enumerate(results) if "error" not in r]
        if not ok:
            return results
        x = torch.stack([self.predictor.preprocess(images[i], invert, center) for i in ok])
        classes = self.predictor.classes
        # the top class (also when the answer is "none of these": its map shows what the guess rests on)
        target = torch.tensor([classes.index(results[i]["top_k"][0][0]) for i in ok])
        maps = self.heatmaps(x, target)
        mean, std = self.predictor._mean, self.predictor._std
        for j, i in enumerate(ok):
            results[i]["heatmaps"] = {k: v[j] for k, v in maps.items()}
            results[i]["input"] = (x[j] * std + mean).clamp(0, 1)
        return results

    def explain_files(self, inputs: Sequence[str], out: str | Path, top_k: int = 3, invert: str = "auto",
                      center: str = "auto") -> list[dict[str, Any]]:
        """Files, folders or globs -> OUT/<name>.png per image (the image, its heatmap overlays and the
        top-k classes) and OUT/explain.json; returns the JSON's rows."""
        from smallvision.io import write_json
        from smallvision.predict import expand_inputs
        from smallvision.report.plots import plot_explanation

        files = expand_inputs(inputs)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = []
        used: set[str] = set()
        for start in range(0, len(files), 64):
            for r in self.explain(files[start : start + 64], top_k, invert, center):
                row = {k: v for k, v in r.items() if k not in ("heatmaps", "input")}
                if "heatmaps" in r:
                    stem = Path(r["file"]).stem
                    name, n = f"{stem}.png", 1
                    while name in used:  # the same file name in two folders
                        name, n = f"{stem}-{n}.png", n + 1
                    used.add(name)
                    plot_explanation(r["input"], r["heatmaps"], r["top_k"], out / name, Path(r["file"]).name)
                    row["figure"] = str(out / name)
                    row["methods"] = list(r["heatmaps"])
                rows.append(row)
        write_json(out / RunFolder.EXPLAIN_JSON, rows)
        return rows


def heatmap_rgba(m: torch.Tensor) -> Any:
    """(H, W) in [0, 1] -> an (H, W, 4) uint8 'jet'-coloured overlay whose opacity follows the map."""
    import matplotlib
    import numpy as np

    rgba = matplotlib.colormaps["jet"](m.clamp(0, 1).numpy())
    rgba[..., 3] = 0.15 + 0.6 * m.clamp(0, 1).numpy()
    return (rgba * 255).astype(np.uint8)


def upsample(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) map resized bilinearly to `size` (for an overlay on the original photo)."""
    return F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def overlay_image(img01: torch.Tensor, heat: torch.Tensor, size: int = 224, alpha: float = 0.5) -> Any:
    """The image as the model saw it (C, H, W in [0, 1]) with `heat` (H, W in [0, 1]) over it in
    'jet', as a PIL RGB image `size` pixels on its longer side (nearest-neighbour for the pixels
    of a tiny input, bilinear for the heatmap)."""
    import matplotlib
    import numpy as np
    from PIL import Image

    c, h, w = img01.shape
    scale = size / max(h, w)
    out = (max(1, round(w * scale)), max(1, round(h * scale)))
    a = (img01.clamp(0, 1).numpy() * 255).astype(np.uint8)
    base = Image.fromarray(a[0] if c == 1 else a[:3].transpose(1, 2, 0)).convert("RGB")
    base = base.resize(out, Image.NEAREST if max(h, w) <= 64 else Image.BILINEAR)
    hm = upsample(heat.float(), (out[1], out[0])).clamp(0, 1).numpy()
    colour = (matplotlib.colormaps["jet"](hm)[..., :3] * 255).astype(np.uint8)
    return Image.blend(base, Image.fromarray(colour), alpha)
