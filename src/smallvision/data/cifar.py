"""CIFAR-10's python batches (``cifar10``): read without running pickled code."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from smallvision.data.datasets import DATASETS, ImageData, make_data
from smallvision.data.sources import locate_or_download
from smallvision.errors import DataError


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
