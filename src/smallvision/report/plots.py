"""Report figures, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    import io

    from smallvision.io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(history: Sequence[dict[str, Any]], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch (train, validation, test when recorded); learning rate on a second axis."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    ep = [h["epoch"] for h in history]
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((ax_l, "loss", "loss (cross-entropy)"), (ax_a, "accuracy", "accuracy (%)")):
        for split, style in (("train", "-o"), ("val", "-s"), ("test", ":^")):
            ys = [h.get(f"{split}_{key}") for h in history]
            if any(v is not None for v in ys):
                ax.plot(ep, [np.nan if v is None else v for v in ys], style, ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="center right" if key == "accuracy" else "upper right", fontsize=8)
        lr_ax = ax.twinx()
        lrs = [h["lr"] for h in history]
        lr_ax.plot(ep, lrs, "--", color="grey", lw=1)
        lr_ax.set_ylim(0, max(lrs) * 1.15 or 1)  # from 0, so a constant rate is a flat line, not noise
        lr_ax.set_ylabel("learning rate (dashed)", color="grey", fontsize=8)
        lr_ax.tick_params(axis="y", labelcolor="grey", labelsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def plot_confusion(cm: torch.Tensor, class_names: Sequence[str], path: Path) -> None:
    """Counts and row-normalised (recall per true class) side by side, class names on both axes."""
    plt = _plt()
    k = len(class_names)
    cmn = cm.float() / cm.sum(1, keepdim=True).clamp_min(1)
    side = max(4.5, 0.45 * k + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side))
    for ax, mat, title, fmt in ((axes[0], cm, "counts", "{:d}"), (axes[1], cmn, "row-normalised", "{:.2f}")):
        m = mat.numpy()
        ax.imshow(m if title == "row-normalised" else np.log1p(m), cmap="Blues")
        ax.set_title(title)
        ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), class_names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if k <= 20:
            thresh = (m.max() if title == "row-normalised" else np.log1p(m).max()) * 0.6
            for i in range(k):
                for j in range(k):
                    v = m[i, j]
                    shade = v if title == "row-normalised" else np.log1p(v)
                    ax.text(j, i, fmt.format(int(v) if title == "counts" else float(v)), ha="center", va="center",
                            fontsize=7 if k > 10 else 8, color="white" if shade > thresh else "black")
    fig.tight_layout()
    _save(fig, path)


def _show(ax: Any, img: torch.Tensor) -> None:
    """img: (C, H, W) in [0, 1]."""
    a = img.clamp(0, 1).numpy()
    if a.shape[0] == 1:
        ax.imshow(a[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(a[:3].transpose(1, 2, 0))
    ax.set_xticks([])
    ax.set_yticks([])


def plot_image_grid(images: Sequence[torch.Tensor], titles: Sequence[str], path: Path, suptitle: str = "",
                    cols: int = 6, title_colors: Sequence[str] | None = None) -> None:
    plt = _plt()
    n = max(len(images), 1)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < len(images):
            _show(ax, images[i])
            ax.set_title(titles[i], fontsize=8, color=(title_colors or ["black"] * n)[i])
        else:
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_bars(names: Sequence[str], values: Sequence[float], path: Path, title: str, ylabel: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(names) + 2), 3.6))
    ax.bar(range(len(names)), values, color="#4a7fb5")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


# ----------------------------------------------------------------------------- generative models' pictures
def save_grid(images01: torch.Tensor, path: Path, nrow: int = 8) -> None:
    """(N, C, H, W) in [0, 1] -> one PNG grid (2-px white gaps), written atomically."""
    import io

    from PIL import Image
    from torchvision.utils import make_grid

    from smallvision.io import atomic_write_bytes

    grid = make_grid(images01.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0)
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if images01.shape[1] == 1 else arr).resize(
        (arr.shape[1] * 2, arr.shape[0] * 2), Image.NEAREST).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def save_gif(frames: list[Path], path: Path, ms: int = 400) -> None:
    """The per-epoch grids as one animated GIF (the last frame held longer)."""
    from PIL import Image

    imgs = [Image.open(f).convert("P", palette=Image.ADAPTIVE) for f in frames]
    if imgs:
        durations = [ms] * (len(imgs) - 1) + [ms * 5]
        imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=durations, loop=0)


def plot_losses(history: list[dict[str, Any]], keys: list[str], path: Path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for k in keys:
        ax.plot([h["epoch"] for h in history], [h[k] for h in history], marker="o", ms=3, label=k.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
