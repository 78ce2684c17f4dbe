"""Data-set registry: each entry turns a spec and its options into in-memory uint8 tensors.

A spec is ``NAME`` or ``NAME:PATH`` (``idx:DIR``, ``csv:TRAIN.csv``, ``folder:DIR``); the path is
taken verbatim, commas included. Options are structured: ``data_args`` (``--data-arg KEY=VALUE``),
typed by the entry's contract (``options={"size": int, ...}``). The older comma form
(``folder:DIR,size=64``, ``csv:TRAIN,TEST``, ``fake:1x28x28,classes=10``) still works when the
whole argument is not an existing path.

Every entry returns an `ImageData`: train and test images as uint8 (N, C, H, W), int64 labels,
and the `DatasetInfo` (class names, mean/std measured on the training images). Each entry also
declares a ``fixture``: a function writing a tiny instance of its data under a folder and
returning the settings that load it, which the conformance suite (tests/test_conformance.py)
trains on. A new data set is one file in this package with one ``@DATASETS.register``; each entry lives
beside its reader (idx.py: the MNIST family and idx:DIR, cifar.py, digits.py, csvdata.py,
npz.py, synthetic.py: fake, folder.py: folders, streamed or in memory).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallvision.config import DatasetSpec, split_spec  # noqa: F401 - split_spec re-exported
from smallvision.data.info import DatasetInfo, looks_like_digits
from smallvision.errors import DataError, UsageError
from smallvision.registry import Contract, Registry


@dataclass
class ImageData:
    info: DatasetInfo
    train_x: torch.Tensor  # uint8 (N, C, H, W); a streamed folder: folder.ImageFiles (same len/shape/indexing)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str  # where the files came from, for the report
    test_files: list[str] | None = None  # image folders: the file behind each test image
    skipped: list[str] = field(default_factory=list)  # unreadable files left out, named
    train_files: list[str] | None = None  # image folders: the file behind each training image


Loader = Callable[..., ImageData]  # (arg: str | None, data_dir: str | Path | None, **options) -> ImageData


@dataclass(frozen=True)
class DataContract(Contract):
    fixture: Callable[..., dict[str, Any]] | None = None  # (tmp folder) -> train settings of a tiny copy (the tests)
    options: dict[str, type] = field(default_factory=dict)  # --data-arg KEY: its type
    positional: str | None = None  # the option a bare extra part of the older comma form names
    portable: tuple[str, ...] = ()  # options a recipe's value of holds for any data set of this kind


DATASETS: Registry[Loader] = Registry("data set", contract=DataContract)


def _typed(name: str, key: str, val: object, kind: type) -> object:
    if isinstance(val, kind) and not (kind is int and isinstance(val, bool)):
        return val
    try:
        return kind(val)
    except (TypeError, ValueError):
        what = {int: "an integer", str: "text"}.get(kind, kind.__name__)
        raise UsageError(f"{name}: {key} takes {what}, got {val!r}") from None


def load_dataset(spec: str, data_dir: str | Path | None = None, options: dict[str, object] | None = None) -> ImageData:
    """Load a data set by spec and options, e.g. ``("mnist")``, ``("idx:/data/mnist")``,
    ``("folder:~/pets", options={"size": 64})``. Options are checked against the entry's contract."""
    entry = DATASETS.entry(DatasetSpec.parse(spec, strict=False).name)
    known: dict[str, type] = entry.contract.options
    name, arg, legacy = split_spec(spec, entry.contract.positional)
    opts = {**legacy, **(options or {})}
    for key, val in opts.items():
        if key not in known:
            raise UsageError(f"{name}: unknown option {key!r}; known: {', '.join(known) or 'none'}")
        opts[key] = _typed(name, key, val, known[key])
    return entry.fn(arg, data_dir, **opts)


def given_path(name: str, arg: str | None, folder: bool, example: str) -> Path:
    """The path after ``NAME:``, which must exist as a folder (or a file): else a one-line error."""
    if not arg:
        raise UsageError(f"{name} needs a {'folder' if folder else 'file'}: --dataset {name}:{example}")
    path = Path(arg).expanduser()
    if not (path.is_dir() if folder else path.is_file()):
        raise DataError(f"{name}:{arg}: no such {'folder' if folder else 'file'}")
    return path


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, on the [0, 1] scale (MNIST: 0.1307, 0.3081)."""
    xs = x[: min(len(x), 20000)].float().div_(255)  # a 20k sample pins both to 3 decimals
    dims = (0, 2, 3)
    std = xs.std(dim=dims).clamp_min(1e-3)
    return tuple(round(float(v), 4) for v in xs.mean(dim=dims)), tuple(round(float(v), 4) for v in std)


def make_data(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    class_names: list[str] | None,
    source: str,
    digit_style: bool | None = None,
) -> ImageData:
    """The checked ImageData of arrays. `digit_style`: what the entry declares (MNIST-style strokes,
    for predict's preprocessing); None: the name rule for users' files (`looks_like_digits`)."""
    tx, ty = torch.from_numpy(np.ascontiguousarray(train[0])), torch.from_numpy(train[1]).long()
    vx, vy = torch.from_numpy(np.ascontiguousarray(test[0])), torch.from_numpy(test[1]).long()
    if len(tx) == 0:
        raise DataError(f"{name}: the training set is empty")
    if tx.shape[1:] != vx.shape[1:]:
        raise DataError(f"{name}: train images are {tuple(tx.shape[1:])} but test images are {tuple(vx.shape[1:])}")
    k = int(max(int(ty.max()), int(vy.max()) if len(vy) else 0)) + 1
    if class_names is None:
        class_names = [str(i) for i in range(k)]
    if k > len(class_names):
        raise DataError(f"{name}: label {k - 1} out of range for {len(class_names)} classes")
    present = torch.unique(ty)
    if len(present) < 2:
        raise DataError(f"{name}: the training set holds a single class; a classifier needs at least two")
    if len(present) < k:  # class indices are 0..max label: a gap is likely a labelling mistake
        missing = sorted(set(range(k)) - set(present.tolist()))
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        warnings.warn(f"{name}: no training image has label {shown}; the model still gets {k} outputs "
                      f"(labels 0-{k - 1}: the largest label sets the class count)", stacklevel=2)
    mean, std = channel_stats(tx)
    if digit_style is None:
        digit_style = looks_like_digits(name, tx.shape[1])
    info = DatasetInfo(name, len(class_names), tx.shape[1], tx.shape[2], tx.shape[3], mean, std, tuple(class_names),
                       digit_style)
    return ImageData(info, tx, ty, vx, vy, source)
