"""`smallvision show`: sample images per class and the class balance of a data set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from smallvision.report import plots


def show_dataset(spec: str, out: str | Path, per_class: int = 8, data_dir: str | None = None) -> dict[str, Any]:
    from smallvision.data import load_dataset

    d = load_dataset(spec, data_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(d.info.class_names)
    g = torch.Generator().manual_seed(0)
    images, titles = [], []
    for k in range(d.info.num_classes):
        idx = torch.nonzero(d.train_y == k).flatten()
        pick = idx[torch.randperm(len(idx), generator=g)[:per_class]]
        for j, i in enumerate(pick):
            images.append(d.train_x[i].float() / 255)
            titles.append(names[k] if j == 0 else "")
    plots.plot_image_grid(images, titles, out / "samples.png", cols=per_class,
                          suptitle=f"{d.info.name}: {per_class} random training images per class (one row each)")
    train_counts = torch.bincount(d.train_y, minlength=d.info.num_classes).tolist()
    test_counts = torch.bincount(d.test_y, minlength=d.info.num_classes).tolist()
    plots.plot_bars(names, train_counts, out / "balance.png", f"{d.info.name}: training images per class", "images")
    rows = [{"class": n, "train": a, "test": b} for n, a, b in zip(names, train_counts, test_counts, strict=True)]
    lines = [f"{d.info.name}: {len(d.train_x)} train / {len(d.test_x)} test images, "
             f"{'×'.join(map(str, d.info.input_shape))}, mean {d.info.mean}, std {d.info.std}, from {d.source}",
             f"{'class':<16}{'train':>8}{'test':>8}"]
    lines += [f"{r['class']:<16}{r['train']:>8}{r['test']:>8}" for r in rows]
    text = "\n".join(lines)
    (out / "balance.txt").write_text(text + "\n")
    return {"text": text, "samples": str(out / "samples.png"), "balance": str(out / "balance.png"), "rows": rows}
