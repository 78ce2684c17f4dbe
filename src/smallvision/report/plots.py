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
    lines = max((t.count("\n") + 1 for t in titles), default=1)  # room for titles of several lines
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, (1.8 + 0.16 * lines) * rows + 0.4), squeeze=False,
                             layout="constrained")  # constrained: a title of several lines never covers the row above
    for i, ax in enumerate(axes.flat):
        if i < len(images):
            _show(ax, images[i])
            ax.set_title(titles[i], fontsize=8, color=(title_colors or ["black"] * n)[i])
        else:
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
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


def plot_quality(history: list[dict[str, Any]], path: Path, title: str) -> None:
    """--score-every: the classifier Inception Score and the Fréchet distance of the samples
    against seconds of training, one point per scored epoch."""
    plt = _plt()
    pts = [h for h in history if "inception_score" in h]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    t = [h["seconds"] for h in pts]
    a.plot(t, [h["inception_score"] for h in pts], marker="o", ms=3, color="#1f77b4")
    a.set_ylabel("classifier Inception Score (higher is better)")
    b.plot(t, [h["frechet_distance"] for h in pts], marker="o", ms=3, color="#d62728")
    b.set_ylabel("Fréchet distance to the test set (lower is better)")
    b.set_yscale("log")
    for ax in (a, b):
        ax.set_xlabel("seconds of training")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_reliability(before: dict[str, list[float]], after: dict[str, list[float]], path: Path, title: str = "") -> None:
    """Reliability diagrams side by side (calibration.reliability's bins): accuracy per confidence
    bin as bars against the diagonal, the gap shaded; the image count per bin under each bar."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharey=True)
    for ax, rel, name in ((axes[0], before, "before (T = 1)"), (axes[1], after, "after temperature scaling")):
        lo, hi = np.array(rel["lower"]), np.array(rel["upper"])
        acc, conf, n = np.array(rel["accuracy"]), np.array(rel["confidence"]), np.array(rel["count"])
        mid, w = (lo + hi) / 2, hi - lo
        keep = n > 0
        ax.bar(mid[keep], acc[keep], width=w[keep], edgecolor="#1f4e79", color="#4a90d9", label="accuracy")
        ax.bar(mid[keep], conf[keep] - acc[keep], bottom=acc[keep], width=w[keep], fill=False, hatch="///",
               edgecolor="#c0392b", lw=0.8, label="gap to the mean confidence")
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
        total = max(int(n.sum()), 1)
        ece = float(np.nansum(np.abs(acc - conf)[keep] * n[keep]) / total)
        ax.set_title(f"{name}: ECE {100 * ece:.2f} %", fontsize=10)
        ax.set_xlabel("confidence (top-1 probability); in white: images per bin")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        for m, k in zip(mid[keep], n[keep], strict=True):
            ax.text(m, 0.02, str(int(k)), ha="center", va="bottom", fontsize=6, rotation=90, color="white")
    axes[0].set_ylabel("accuracy in the bin")
    axes[0].legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def _overlay(ax: Any, img: torch.Tensor, heat: torch.Tensor) -> None:
    """img (C, H, W) in [0, 1] in grey/colour, the heatmap (H, W) in [0, 1] over it ('jet', 50 %)."""
    _show(ax, img)
    ax.imshow(heat.clamp(0, 1).numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1,
              extent=(-0.5, img.shape[-1] - 0.5, img.shape[-2] - 0.5, -0.5), interpolation="bilinear")


METHOD_TITLES = {"gradcam": "Grad-CAM", "occlusion": "occlusion"}


def plot_explanation(img: torch.Tensor, heatmaps: dict[str, torch.Tensor], top_k: Sequence[tuple[str, float]],
                     path: Path, title: str = "") -> None:
    """One image: as the model saw it, each heatmap over it, and the top-k classes as bars."""
    plt = _plt()
    n = 1 + len(heatmaps)
    fig, axes = plt.subplots(1, n + 1, figsize=(2.6 * n + 2.8, 2.9),
                             gridspec_kw={"width_ratios": [1] * n + [1.1]})
    _show(axes[0], img)
    axes[0].set_title("input", fontsize=9)
    for ax, (name, heat) in zip(axes[1:n], heatmaps.items(), strict=True):
        _overlay(ax, img, heat)
        ax.set_title(f"{METHOD_TITLES.get(name, name)} · {top_k[0][0]}", fontsize=9)
    bar = axes[-1]
    labels, probs = [str(lbl) for lbl, _ in top_k][::-1], [p for _, p in top_k][::-1]
    bar.barh(range(len(labels)), probs, color=["#4a90d9"] * (len(labels) - 1) + ["#1f4e79"])
    bar.set_yticks(range(len(labels)), labels, fontsize=8)
    bar.set_xlim(0, 1)
    bar.set_xlabel("probability", fontsize=8)
    for i, p in enumerate(probs):
        bar.text(min(p + 0.02, 0.75), i, f"{p:.2f}", va="center", fontsize=8)
    bar.set_title(f"top {len(labels)}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def plot_explained_grid(images: Sequence[torch.Tensor], heatmaps: Sequence[torch.Tensor], titles: Sequence[str],
                        path: Path, suptitle: str = "", cols: int = 6, title_colors: Sequence[str] | None = None) -> None:
    """The top-losses grid with a heatmap row under each row of images."""
    plt = _plt()
    n = max(len(images), 1)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(1.9 * cols, 4.0 * rows + 0.4), squeeze=False)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        top, low = axes[2 * r, c], axes[2 * r + 1, c]
        if i < len(images):
            _show(top, images[i])
            top.set_title(titles[i], fontsize=8, color=(title_colors or ["black"] * n)[i])
            _overlay(low, images[i], heatmaps[i])
        else:
            top.axis("off")
            low.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_latent(z: torch.Tensor, y: torch.Tensor, names: list[str], path: Path, title: str) -> None:
    """2-D scatter of the codes: the code itself when 2-D, else its first two principal components."""
    how = "latent code"
    if z.shape[1] > 2:
        zc = z - z.mean(0)
        _, _, v = torch.pca_lowrank(zc, q=2, center=False)
        z, how = zc @ v[:, :2], "first two principal components"
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 6))
    sc = ax.scatter(z[:, 0], z[:, 1], c=y, cmap="tab10", s=3, alpha=0.6)
    handles = [plt.Line2D([], [], marker="o", ls="", color=sc.cmap(sc.norm(i)), label=n) for i, n in enumerate(names)]
    ax.legend(handles=handles, title="class", loc="best", fontsize=8, markerscale=1.5)
    ax.set_title(f"{title}: test-set {how}")
    fig.tight_layout()
    _save(fig, path)
