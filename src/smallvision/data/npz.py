"""`npz:FILE`: a NumPy archive in Keras's ``mnist.npz`` layout (``x_train``, ``y_train``, ``x_test``,
``y_test``), the file ``keras.datasets.*.load_data()`` caches. Images (N, H, W) or (N, H, W, C),
uint8 0-255 or floats in [0, 1]. Read with ``allow_pickle=False``: an archive cannot run code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from smallvision.data.datasets import DATASETS, ImageData, given_path, make_data
from smallvision.errors import DataError

KEYS = ("x_train", "y_train", "x_test", "y_test")


def _as_nchw(x: np.ndarray, path: Path) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]  # (N, H, W) -> (N, 1, H, W)
    elif x.ndim == 4 and x.shape[-1] in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # Keras is channels-last
    else:
        raise DataError(f"{path}: images must be (N, H, W) or (N, H, W, C) with C 1 or 3, got {x.shape}")
    if x.dtype != np.uint8:
        x = np.clip(np.round(x.astype(np.float64) * (255.0 if x.max() <= 1.0 else 1.0)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(x)


def _fixture(tmp: Path) -> dict[str, object]:
    from smallvision.data.synthetic import small_set

    (tx, ty), (vx, vy) = small_set(k=5, n=300, n_test=100)
    np.savez(tmp / "keras, mnist.npz", x_train=tx[:, 0], y_train=ty, x_test=vx[:, 0], y_test=vy)
    return {"dataset": f"npz:{tmp / 'keras, mnist.npz'}"}


@DATASETS.register("npz", "npz:FILE — a NumPy archive as Keras caches it (x_train, y_train, x_test, y_test)",
                   fixture=_fixture)
def _npz(arg: str | None, data_dir: str | Path | None) -> ImageData:
    path = given_path("npz", arg, False, "PATH/TO/mnist.npz")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing arrays {', '.join(missing)} (found {', '.join(z.files) or 'none'})")
            tx, ty, vx, vy = (z[k] for k in KEYS)
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise DataError(f"{path}: not a readable .npz archive ({e})") from None
    return make_data(f"npz:{path.name}", (_as_nchw(tx, path), ty.astype(np.int64).ravel()),
                     (_as_nchw(vx, path), vy.astype(np.int64).ravel()), None, str(path))
