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

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from smallvision.errors import UsageError

TINY = 32  # inputs up to this size also get occlusion sensitivity


def feature_layers(model: nn.Module) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """(name, module, output shape) of every module inside ``model.features`` whose output is a
    4-D map larger than 1 × 1, in the order they finish (a container after its children), by one
    dry forward of a zero image."""
    seen: list[tuple[str, nn.Module, tuple[int, ...]]] = []

    def hook(name: str):  # type: ignore[no-untyped-def]
        def record(module: nn.Module, _inp: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-1] * out.shape[-2] > 1:
                seen.append((name, module, tuple(out.shape[1:])))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.features.named_modules() if n]  # type: ignore[union-attr]
    try:
        with no_tta(model), torch.no_grad():
            model(torch.zeros(1, *model.input_shape))  # type: ignore[arg-type]
    finally:
        for h in handles:
            h.remove()
    return seen


def cam_layer(model: nn.Module, name: str | None = None) -> tuple[str, nn.Module] | None:
    """The layer Grad-CAM reads: `name` (a module path inside ``features``), or the last feature map."""
    if name:
        mods = dict(model.features.named_modules())  # type: ignore[union-attr]
        if name not in mods:
            raise UsageError(f"--layer {name!r}: no such module in the model's features (e.g. "
                             f"{', '.join(n for n, *_ in feature_layers(model)[-3:]) or 'none has a spatial map'})")
        return name, mods[name]
    found = feature_layers(model)
    return (found[-1][0], found[-1][1]) if found else None


@contextlib.contextmanager
def no_tta(model: nn.Module) -> Iterator[None]:
    """Test-time views off (each view would run the hooked layer again) and eval mode, restored after."""
    views, training = getattr(model, "tta_views", ()), model.training
    if hasattr(model, "tta_views"):
        model.tta_views = ()  # type: ignore[assignment]
    model.eval()
    try:
        yield
    finally:
        if hasattr(model, "tta_views"):
            model.tta_views = views  # type: ignore[assignment]
        model.train(training)


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    """(B, H, W) >= 0 -> each map divided by its maximum (all-zero maps stay zero)."""
    peak = maps.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    return maps / peak


def gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None, layer: str | None = None,
            normalise: bool = True) -> torch.Tensor:
    """Grad-CAM (HiResCAM form) of `target` (default: the predicted class) for a batch `x`
    (B, C, H, W) as the model takes it: (B, H, W), non-negative (ReLU of the map), bilinearly upsampled to
    the input size; each map scaled to a maximum of 1 unless ``normalise=False``."""
    from captum.attr import LayerAttribution, LayerGradientXActivation

    found = cam_layer(model, layer)
    if found is None:
        raise UsageError("this model has no spatial feature map (a fully connected net): use occlusion")
    with no_tta(model):
        if target is None:
            with torch.no_grad():
                target = model(x).argmax(1)
        attr = LayerGradientXActivation(model, found[1]).attribute(x, target=target)
        cam = attr.detach().float().sum(1, keepdim=True).clamp_min(0)  # (B, 1, h, w): positive evidence
        maps = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    maps = maps[:, 0].clamp_min(0)  # (B, H, W)
    return _normalise(maps) if normalise else maps


def occlusion(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None, window: int = 0,
              stride: int = 0, normalise: bool = True) -> torch.Tensor:
    """Occlusion sensitivity: how much the `target` logit drops when a window × window patch is
    set to black (the normalised value of a 0 pixel), slid by `stride`; (B, H, W), drops only
    (non-negative). Defaults: a window of 1/7 of the side (4 px at 28), half as much stride."""
    from captum.attr import Occlusion

    c, h, w = x.shape[1:]
    window = window or max(2, min(h, w) // 7)
    stride = stride or max(1, window // 2)
    mean = torch.tensor(getattr(model, "mean", (0.0,) * c), dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(getattr(model, "std", (1.0,) * c), dtype=x.dtype).view(1, -1, 1, 1)
    black = ((0 - mean) / std).expand_as(x).contiguous()
    with no_tta(model):
        if target is None:
            with torch.no_grad():
                target = model(x).argmax(1)
        attr = Occlusion(model).attribute(x, target=target, sliding_window_shapes=(c, window, window),
                                          strides=(c, stride, stride), baselines=black, perturbations_per_eval=64)
    maps = attr.detach().sum(1).clamp_min(0) / c
    return _normalise(maps) if normalise else maps


def default_method(model: nn.Module, layer: str | None = None) -> str:
    """'occlusion' for inputs of at most TINY px or models with no spatial map, else 'gradcam'
    (the sharper of the two where both are offered: what /explain and the report show)."""
    h, w = model.input_shape[1:]  # type: ignore[index]
    return "occlusion" if min(h, w) <= TINY or cam_layer(model, layer) is None else "gradcam"


def heatmaps(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None, method: str = "auto"
             ) -> torch.Tensor:
    """(B, H, W) maps in [0, 1] by `method` (gradcam, occlusion, or auto: default_method)."""
    method = default_method(model) if method == "auto" else method
    return gradcam(model, x, target) if method == "gradcam" else occlusion(model, x, target)


def mass_inside(maps: torch.Tensor, boxes: Sequence[tuple[int, int, int, int]]) -> torch.Tensor:
    """Per map, the share of its total that lies inside its box (top, left, height, width)."""
    out = []
    for m, (t, lft, hh, ww) in zip(maps, boxes, strict=True):
        total = float(m.sum())
        out.append(float(m[t : t + hh, lft : lft + ww].sum()) / total if total > 0 else 0.0)
    return torch.tensor(out)


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
        target = torch.tensor([classes.index(results[i]["label"]) for i in ok])
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
        write_json(out / "explain.json", rows)
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
