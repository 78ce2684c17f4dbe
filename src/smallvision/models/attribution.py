"""Attribution maps of any registered classifier (the parts layer: the trainer's report and
`smallvision.explain` both use them). What they compute and why is explained in
`smallvision/explain.py`'s docstring: Grad-CAM in its HiResCAM form on the last feature map,
and occlusion sensitivity, both from Captum."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
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


