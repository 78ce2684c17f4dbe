"""CSV image tables in seed 004's layout: one row per image, ``label,p0,p1,...,pN`` with pixels
0-255 row-major, with or without a header row. Reading and writing (for `smallvision convert`)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from smallvision.data.datasets import DATASETS, ImageData, make_data
from smallvision.errors import DataError, UsageError


def _has_header(first_line: str) -> bool:
    first = first_line.split(",")[0].strip().strip('"')
    try:
        float(first)
        return False
    except ValueError:
        return True


def read_csv(path: str | Path, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Return images uint8 (N, C, S, S) and labels int64 (N,). Images must be square."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a CSV file") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file") from None
    if not first.strip():
        raise DataError(f"{path}: empty CSV file")
    skip = 1 if _has_header(first) else 0
    try:
        with warnings.catch_warnings():  # "input contained no data": reported below as our own error
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(path, delimiter=",", dtype=np.float64, skiprows=skip, ndmin=2, encoding="utf-8")
    except (ValueError, UnicodeDecodeError) as e:
        msg = str(e).split(";")[0]
        if "row" in msg and skip:  # numpy counts data rows from 1 after the skipped header
            msg += " (not counting the header row)"
        raise DataError(f"{path}: {msg}") from None
    if table.shape[0] == 0:
        raise DataError(f"{path}: no data rows")
    npix = table.shape[1] - 1
    side = math.isqrt(max(npix // channels, 0))
    if npix < 1 or side * side * channels != npix:
        raise DataError(
            f"{path}: {table.shape[1]} columns per row; expected a label then {channels}×S×S pixels "
            f"(785 for 28×28 grayscale)"
        )
    labels, pixels = table[:, 0], table[:, 1:]
    bad = np.flatnonzero((labels != np.round(labels)) | (labels < 0) | (labels > 9999))
    if bad.size:
        r = int(bad[0])
        raise DataError(f"{path}: row {r + 1 + skip}: label {labels[r]:g} is not a class index (0, 1, 2, ...)")
    badp = np.argwhere((pixels < 0) | (pixels > 255) | np.isnan(pixels))
    if badp.size:
        r, c = (int(v) for v in badp[0])
        raise DataError(f"{path}: row {r + 1 + skip}, column {c + 2}: pixel {pixels[r, c]:g} outside 0-255")
    images = np.round(pixels).astype(np.uint8).reshape(-1, channels, side, side)
    return images, labels.astype(np.int64)


def write_csv(path: str | Path, images: np.ndarray, labels: np.ndarray, header: bool = True) -> None:
    """Write images (N, C, H, W) uint8 and labels (N,) as ``label,p0..pK`` rows."""
    flat = images.reshape(len(images), -1).astype(np.int64)
    table = np.concatenate([labels.reshape(-1, 1).astype(np.int64), flat], axis=1)
    head = "label," + ",".join(f"p{i}" for i in range(flat.shape[1])) if header else ""
    np.savetxt(path, table, fmt="%d", delimiter=",", header=head, comments="")


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
