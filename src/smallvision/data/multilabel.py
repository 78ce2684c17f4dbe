"""Multi-label data sets: each image carries a set of labels (several, one, or, for photos of
nothing in particular, none is refused: see below), stored as a multi-hot float matrix (N, K).

- ``multilabel:PATH`` — fastai's CSV layout: ``file,labels`` rows, the labels separated by spaces
  (``--data-arg delimiter=;`` for another separator), a header row or not; PATH is the CSV or a
  folder holding ``labels.csv``. Image paths are relative to the CSV's folder (or
  ``--data-arg folder=DIR``). The test split: ``--data-arg test=CSV``, else a seeded
  ``holdout`` share (0.2).
- ``multi-mnist`` — a synthetic set for tests and the demo: 1 to ``max_digits`` different MNIST
  digits placed at random on one canvas, the labels being the digits present (train canvases
  from MNIST's training images, test canvases from its test images; ``--data-arg source=NAME``
  composes another grayscale set, e.g. fashion-mnist or digits).

A row naming a missing file or with an empty label set is a one-line error: a silent empty set
would train the model that such images show nothing.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import torch

from smallvision.data.datasets import DATASETS, ImageData, channel_stats
from smallvision.data.info import DatasetInfo
from smallvision.errors import DataError, UsageError

LABELS_CSV = "labels.csv"


def multilabel_data(name: str, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                    class_names: list[str], source: str) -> ImageData:
    """The checked ImageData of uint8 images and multi-hot (N, K) float targets."""
    (tx, ty), (vx, vy) = train, test
    if len(tx) == 0:
        raise DataError(f"{name}: the training set is empty")
    if tx.shape[1:] != vx.shape[1:]:
        raise DataError(f"{name}: train images are {tuple(tx.shape[1:])} but test images are {tuple(vx.shape[1:])}")
    if len(class_names) < 2:
        raise DataError(f"{name}: {len(class_names)} label in all; multi-label needs at least two")
    absent = [c for c, n in zip(class_names, ty.sum(0).tolist(), strict=True) if n == 0]
    if absent:
        warnings.warn(f"{name}: no training image has the label {', '.join(absent[:10])}", stacklevel=2)
    mean, std = channel_stats(tx)
    info = DatasetInfo(name, len(class_names), tx.shape[1], tx.shape[2], tx.shape[3], mean, std, tuple(class_names),
                       False, multilabel=True)
    return ImageData(info, tx, ty.float(), vx, vy.float(), source)


def read_labels_csv(path: Path, folder: Path, delimiter: str, suffix: str = "") -> list[tuple[Path, list[str]]]:
    """(image path, labels) per row of a ``file,labels`` CSV; a first row whose file does not
    exist and whose second cell is not a label list of existing-file rows is a header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({e})") from None
    if rows and not (folder / (rows[0][0].strip() + suffix)).is_file():
        rows = rows[1:]  # fastai's files start with a header (fname,labels / image_name,tags)
    out = []
    for n, r in enumerate(rows, start=2):
        if len(r) < 2:
            raise DataError(f"{path}: row {n} has {len(r)} column; expected file,labels")
        file = folder / (r[0].strip() + suffix)
        if not file.is_file():
            raise DataError(f"{path}: row {n} names {file}, which does not exist")
        labels = [t for t in r[1].split(delimiter if delimiter != " " else None) if t.strip()]
        if not labels:
            raise DataError(f"{path}: row {n} ({r[0].strip()}) has an empty label set; give each image at least one "
                            "label (or leave the image out)")
        out.append((file, sorted(set(t.strip() for t in labels))))
    if not out:
        raise DataError(f"{path}: no rows")
    return out


def _multi_hot(rows: list[tuple[Path, list[str]]], classes: list[str]) -> torch.Tensor:
    index = {c: i for i, c in enumerate(classes)}
    y = torch.zeros(len(rows), len(classes))
    for i, (_, labels) in enumerate(rows):
        y[i, [index[t] for t in labels]] = 1
    return y


def _natural(label: str) -> tuple[int, float | str]:
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def _decode(rows: list[tuple[Path, list[str]]], classes: list[str], channels: int, size: int, workers: int
            ) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    from smallvision.data.folder import decode_all

    # the row number rides as the "label", so the rows that decoded are known
    x, kept, skipped = decode_all([(p, i) for i, (p, _) in enumerate(rows)], channels, size, workers)
    y = _multi_hot(rows, classes)[kept]
    return x, y, [str(rows[i][0]) for i in kept.tolist()], skipped


def _csv_fixture(tmp: Path) -> dict[str, object]:
    """Coloured squares in the corners of a 24-px image; the labels are the corners filled."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp / "corners, multi"
    (root / "images").mkdir(parents=True)
    corners = {"tl": (0, 0), "tr": (0, 12), "bl": (12, 0), "br": (12, 12)}
    lines = ["fname,labels"]
    for i in range(240):
        chosen = [c for c in corners if rng.random() < 0.5] or [str(rng.choice(list(corners)))]
        a = rng.integers(0, 60, (24, 24, 3), dtype=np.uint8)
        for c in chosen:
            y0, x0 = corners[c]
            a[y0 : y0 + 12, x0 : x0 + 12] = (200, 180, 60)
        Image.fromarray(a).save(root / "images" / f"{i}.png")
        lines.append(f"images/{i}.png,{' '.join(chosen)}")
    (root / LABELS_CSV).write_text("\n".join(lines) + "\n")
    return {"dataset": f"multilabel:{root}", "data_args": {"workers": 0}}


@DATASETS.register("multilabel", "multilabel:CSV|FOLDER — multi-label images from a 'file,labels' CSV (fastai's layout, "
                   "labels space-separated; FOLDER: its labels.csv); --data-arg size=S, test=CSV, holdout=F (0.2), "
                   "delimiter=D, folder=DIR, suffix=.jpg, channels=1|3, workers=W",
                   options={"size": int, "test": str, "holdout": float, "delimiter": str, "folder": str, "suffix": str,
                            "channels": int, "workers": int},
                   fixture=_csv_fixture, portable=("size", "workers"))
def _multilabel_csv(arg: str | None, data_dir: str | Path | None, size: int = 64, test: str | None = None,
                    holdout: float = 0.2, delimiter: str = " ", folder: str | None = None, suffix: str = "",
                    channels: int = 3, workers: int = 2) -> ImageData:
    if not arg:
        raise UsageError("multilabel needs a CSV or a folder holding labels.csv: --dataset multilabel:PATH")
    path = Path(arg).expanduser()
    if path.is_dir():
        path = path / LABELS_CSV
    if not path.is_file():
        raise DataError(f"multilabel:{arg}: no such file" + (f" ({LABELS_CSV} in the folder)" if Path(arg).is_dir() else ""))
    if not 8 <= size <= 1024:
        raise UsageError(f"multilabel: size must be 8-1024 pixels, got {size}")
    if channels not in (1, 3):
        raise UsageError(f"multilabel: channels takes 1 or 3, got {channels}")
    if not 0 < holdout < 1:
        raise UsageError(f"multilabel: holdout is the seeded test share, between 0 and 1; got {holdout:g}")
    base = Path(folder).expanduser() if folder else path.parent
    rows = read_labels_csv(path, base, delimiter, suffix)
    if test:
        test_path = Path(test).expanduser()
        if not test_path.is_file():
            raise DataError(f"multilabel: test={test}: no such file")
        train_rows, test_rows = rows, read_labels_csv(test_path, Path(folder).expanduser() if folder else test_path.parent,
                                                      delimiter, suffix)
    else:
        perm = np.random.default_rng(0).permutation(len(rows))  # fixed: the test set never changes
        n_test = max(1, round(len(rows) * holdout))
        train_rows, test_rows = [rows[i] for i in sorted(perm[n_test:])], [rows[i] for i in sorted(perm[:n_test])]
    classes = sorted({t for _, labels in train_rows for t in labels}, key=_natural)
    unseen = sorted({t for _, labels in test_rows for t in labels} - set(classes))
    if unseen:
        raise DataError(f"{path}: the test rows use labels no training row has: {', '.join(unseen[:10])}")
    tx, ty, _, bad = _decode(train_rows, classes, channels, size, workers)
    vx, vy, test_files, bad_test = _decode(test_rows, classes, channels, size, workers)
    data = multilabel_data(f"multilabel:{path.parent.name}", (tx, ty), (vx, vy), classes, str(path))
    data.test_files, data.skipped = test_files, bad + bad_test
    return data


def compose(x: torch.Tensor, y: torch.Tensor, n: int, size: int, max_digits: int, k: int, seed: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` canvases of side `size`, each 1..max_digits source images of different classes pasted
    (pixel-wise max) at uniform random places; (uint8 (n, 1, size, size), multi-hot (n, k))."""
    g = np.random.default_rng(seed)
    side = x.shape[-1]
    by_class = [np.flatnonzero(y.numpy() == c) for c in range(k)]
    canvas = np.zeros((n, 1, size, size), dtype=np.uint8)
    target = np.zeros((n, k), dtype=np.float32)
    src = x.numpy()
    for i in range(n):
        classes = g.choice(k, size=int(g.integers(1, max_digits + 1)), replace=False)
        for c in classes:
            img = src[g.choice(by_class[c]), 0]
            top, left = g.integers(0, size - side + 1, size=2)
            view = canvas[i, 0, top : top + side, left : left + side]
            np.maximum(view, img, out=view)
        target[i, classes] = 1
    return torch.from_numpy(canvas), torch.from_numpy(target)


def _compose_fixture(_tmp: Path) -> dict[str, object]:
    return {"dataset": "multi-mnist", "data_args": {"source": "digits", "train": 2000, "test": 300, "max_digits": 1, "size": 24}}


@DATASETS.register("multi-mnist", "multi-label digits: 1-3 different MNIST digits on a 56-px canvas, labelled with the "
                   "digits present; --data-arg train=N (20000), test=M (4000), size=S (2× the digit), max_digits=D, "
                   "source=mnist|fashion-mnist|kmnist|digits",
                   options={"train": int, "test": int, "size": int, "max_digits": int, "source": str},
                   fixture=_compose_fixture)
def _multi_mnist(arg: str | None, data_dir: str | Path | None, train: int = 20000, test: int = 4000,
                 size: int | None = None, max_digits: int = 3, source: str = "mnist") -> ImageData:
    from smallvision.data.datasets import load_dataset

    if source.startswith("multi"):
        raise UsageError(f"multi-mnist: source must be a single-label grayscale set, got {source!r}")
    d = load_dataset(source, data_dir)
    if d.info.channels != 1 or d.train_y.ndim != 1:
        raise UsageError(f"multi-mnist: source must be a single-label grayscale set, got {source!r}")
    k, side = d.info.num_classes, d.info.height
    if source == "digits":  # scikit-learn's 8×8 digits: 16-level pixels, drawn at 16 px
        import torch.nn.functional as F

        up = lambda a: F.interpolate(a.float(), scale_factor=2, mode="nearest").to(torch.uint8)  # noqa: E731
        d.train_x, d.test_x, side = up(d.train_x), up(d.test_x), 2 * side
    size = size or 2 * side
    if size < side:
        raise UsageError(f"multi-mnist: size must be at least the source's {side} px, got {size}")
    if not 1 <= max_digits <= k:
        raise UsageError(f"multi-mnist: max_digits must be 1-{k}, got {max_digits}")
    if train < 1 or test < 1:
        raise UsageError("multi-mnist: train and test must be ≥ 1")
    tx, ty = compose(d.train_x, d.train_y, train, size, max_digits, k, seed=0)
    vx, vy = compose(d.test_x, d.test_y, test, size, max_digits, k, seed=1)
    return multilabel_data(f"multi-{source}", (tx, ty), (vx, vy), list(d.info.class_names) or [str(i) for i in range(k)],
                           f"{d.source} (composed: {train} + {test} canvases of {size} px, 1-{max_digits} per canvas)")
