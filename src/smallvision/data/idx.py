"""Reader for IDX files (the MNIST family's format), gzip-compressed or raw.

Layout (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code, the number of
dimensions, one big-endian int32 per dimension, then the data, row-major, big-endian.
Every way a file can be wrong becomes a `DataError` naming the file and the problem.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from smallvision.errors import DataError

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
