"""Synthetic images: the ``fake`` data set's two kinds, and the tiny fixtures data-set entries declare.

``prototype``: one random pattern per class plus noise (a linear model separates it; smoke tests).
``shapes``: a small shape placed at random on clutter (the class is the shape; `shapes` also returns
where it is, so tests can score where an explanation points).
``stripes``: class k is a grating at angle k·180°/K with a random phase, frequency and position of
its peak contrast, plus noise. Averaged over phases every class is the same grey, so no pixel
template separates them: a model must learn orientation (local, non-linear features). It is the
harder set the conformance suite trains on, where a broken optimiser or model stays at chance.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from smallvision.data.datasets import DATASETS, ImageData, make_data
from smallvision.errors import UsageError


def prototypes(n: int, k: int, c: int, h: int, w: int, g: torch.Generator, protos: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    y = torch.arange(n) % k
    x = protos[y] * 0.6 + torch.rand(n, c, h, w, generator=g) * 0.4
    return (x * 255).round().to(torch.uint8).numpy(), y.numpy()


def stripes(n: int, k: int, c: int, h: int, w: int, g: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, H, W) uint8 gratings and their int64 labels (class = orientation)."""
    y = torch.arange(n) % k
    theta = y.float() * math.pi / k + (torch.rand(n, generator=g) - 0.5) * (math.pi / k) * 0.3  # (N,) ± 15 % jitter
    freq = 2 * math.pi / (3.0 + 2.0 * torch.rand(n, generator=g))  # a period of 3-5 px
    phase = torch.rand(n, generator=g) * 2 * math.pi
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    proj = xx[None] * theta.cos()[:, None, None] + yy[None] * theta.sin()[:, None, None]  # (N, H, W)
    wave = torch.sin(proj * freq[:, None, None] + phase[:, None, None])
    cy, cx = torch.rand(n, generator=g) * h, torch.rand(n, generator=g) * w  # where contrast peaks
    env = torch.exp(-((yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2) / (0.5 * h * w))
    img = 0.5 + 0.4 * wave * env  # (N, H, W)
    x = img[:, None].expand(n, c, h, w) + 0.15 * torch.randn(n, c, h, w, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy(), y.numpy()


SHAPES = ("square", "plus", "ring", "cross")


def _shape_mask(kind: str, s: int) -> torch.Tensor:
    """(s, s) bool mask of one shape, strokes about s/4 wide."""
    yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij")
    c, t = (s - 1) / 2, max(1.0, s / 4)
    if kind == "square":
        return torch.ones(s, s, dtype=torch.bool)
    if kind == "plus":
        return ((yy - c).abs() < t / 2 + 0.01) | ((xx - c).abs() < t / 2 + 0.01)
    if kind == "ring":
        r = ((yy - c) ** 2 + (xx - c) ** 2).sqrt()
        return (r <= s / 2) & (r >= s / 2 - t)
    return ((yy - xx).abs() < t / 2 + 0.3) | ((yy + xx - (s - 1)).abs() < t / 2 + 0.3)  # cross (X)


def shapes(n: int, k: int, c: int, h: int, w: int, g: torch.Generator
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A localisation set: class k is a small bright shape (square, plus, ring, cross; k ≤ 4) of
    side min(h, w)/4 at a random position, on clutter (smooth noise and bright line segments as
    long as the shape, which are in every class). Returns uint8 (N, C, H, W), labels, and each
    shape's box (N, 4): top, left, height, width — where an explanation should point."""
    if not 2 <= k <= len(SHAPES):
        raise UsageError(f"fake kind=shapes: classes must be 2-{len(SHAPES)}, got {k}")
    s = max(4, min(h, w) // 4)
    y = torch.arange(n) % k
    coarse = torch.rand(n, 1, max(2, h // 6), max(2, w // 6), generator=g)
    img = 0.35 * torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    img = img + 0.08 * torch.rand(n, h, w, generator=g)
    boxes = np.zeros((n, 4), dtype=np.int64)
    masks = [_shape_mask(SHAPES[i], s) for i in range(k)]
    for i in range(n):
        for _ in range(3):  # distractors: horizontal or vertical bars of the shape's length
            length, horiz = s, bool(torch.rand(1, generator=g) < 0.5)
            r0 = int(torch.randint(0, h - (1 if horiz else length) + 1, (1,), generator=g))
            c0 = int(torch.randint(0, w - (length if horiz else 1) + 1, (1,), generator=g))
            if horiz:
                img[i, r0, c0 : c0 + length] = 0.9
            else:
                img[i, r0 : r0 + length, c0] = 0.9
        top = int(torch.randint(0, h - s + 1, (1,), generator=g))
        left = int(torch.randint(0, w - s + 1, (1,), generator=g))
        patch = img[i, top : top + s, left : left + s]
        img[i, top : top + s, left : left + s] = torch.where(masks[int(y[i])], torch.tensor(0.95), patch * 0.5)
        boxes[i] = (top, left, s, s)
    x = img[:, None].expand(n, c, h, w)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy(), y.numpy(), boxes


def small_set(kind: str = "stripes", n: int = 240, n_test: int = 80, k: int = 4, shape: tuple[int, int, int] = (1, 16, 16),
              seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A tiny (train, test) pair for fixtures: ((x, y), (x, y)), uint8 (N, C, H, W) and int64 labels."""
    g = torch.Generator().manual_seed(seed)
    if kind == "stripes":
        return stripes(n, k, *shape, g), stripes(n_test, k, *shape, g)
    protos = torch.rand(k, *shape, generator=g)
    return prototypes(n, k, *shape, g, protos), prototypes(n_test, k, *shape, g, protos)


def write_image_folder(root: Path, k: int = 3, n: int = 30, size: int = 20, channels: int = 3) -> Path:
    """Class sub-folders of PNGs (train/ and test/): what ``folder:`` reads."""
    from PIL import Image

    (tx, ty), (vx, vy) = small_set(n=n * k, n_test=max(k, n // 3) * k, k=k, shape=(channels, size, size))
    for split, xs, ys in (("train", tx, ty), ("test", vx, vy)):
        for i, (img, label) in enumerate(zip(xs, ys, strict=True)):
            d = root / split / f"class_{label}"
            d.mkdir(parents=True, exist_ok=True)
            arr = img.transpose(1, 2, 0) if channels == 3 else img[0]
            Image.fromarray(arr).save(d / f"{i}.png")
    return root


@DATASETS.register("fake", "fake[:CxHxW] — synthetic images for smoke tests; --data-arg classes=K, train=N, test=M, "
                   "kind=prototype (a pattern per class + noise), stripes (orientation; harder) or shapes (a small shape "
                   "on clutter, for explanations; synthetic.shapes gives its boxes)",
                   options={"shape": str, "classes": int, "train": int, "test": int, "kind": str},
                   fixture=lambda tmp: {"dataset": "fake:1x16x16", "data_args": {"classes": 4, "kind": "stripes"}})
def _fake(arg: str | None, data_dir: str | Path | None, shape: str = "1x28x28", classes: int = 10, train: int = 1000,
          test: int = 200, kind: str = "prototype") -> ImageData:
    from smallvision.data.synthetic import prototypes, stripes

    try:
        c, h, w = (int(v) for v in (arg or shape).lower().split("x"))
    except ValueError:
        raise UsageError(f"fake: bad shape {arg or shape!r}; e.g. fake:3x32x32 --data-arg classes=10") from None
    if min(c, h, w) < 1 or classes < 2 or train < classes or test < 1:
        raise UsageError(f"fake: need positive sizes, ≥2 classes and ≥1 training image per class (got {c}x{h}x{w}, "
                         f"{classes} classes, {train} train, {test} test)")
    if kind not in ("prototype", "stripes", "shapes"):
        raise UsageError(f"fake: kind takes prototype, stripes or shapes, got {kind!r}")
    g = torch.Generator().manual_seed(0)
    if kind == "shapes":
        tr, te = shapes(train, classes, c, h, w, g)[:2], shapes(test, classes, c, h, w, g)[:2]
    elif kind == "stripes":
        tr, te = stripes(train, classes, c, h, w, g), stripes(test, classes, c, h, w, g)
    else:
        protos = torch.rand(classes, c, h, w, generator=g)  # one pattern per class; noise on top
        tr, te = prototypes(train, classes, c, h, w, g, protos), prototypes(test, classes, c, h, w, g, protos)
    tag = "" if kind == "prototype" else f",{kind}"
    return make_data(f"fake:{c}x{h}x{w}{tag}", tr, te, [f"class{i}" for i in range(classes)], "synthetic",
                     digit_style=False)
