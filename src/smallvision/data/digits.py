"""scikit-learn's bundled 8×8 handwritten digits (``digits``): offline everywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from smallvision.data.datasets import DATASETS, ImageData, make_data


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
