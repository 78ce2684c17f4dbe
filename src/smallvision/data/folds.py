"""K-fold cross-validation splits of any data set: what `smallvision cv` and `smallvision labels` train on.

`fold_indices` assigns every image of a split to one of K folds (stratified and seeded:
scikit-learn's StratifiedKFold, so each fold keeps the class shares). `take_fold` turns a loaded
data set into fold i's: trained on the other K-1 folds, tested on fold i — the run's ordinary
final test is then this fold's out-of-fold prediction. Any source works (named sets, csv, npz,
in-memory or streamed folders): the training settings (``folds``, ``fold``, ``fold_split``) are
part of the run's config, so `--resume` and `--config` re-create the same fold.
"""

from __future__ import annotations

import numpy as np
import torch

from smallvision.data.datasets import ImageData
from smallvision.errors import UsageError


def fold_indices(y: torch.Tensor | np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """The sorted image indices of each of `folds` stratified folds (seeded)."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    if folds < 2:
        raise UsageError(f"--folds must be at least 2 (each image is predicted by a model trained without it), got {folds}")
    counts = np.bincount(y)
    present = counts[counts > 0]
    if len(present) < 2:
        raise UsageError("cross-validation needs at least two classes in the split; it holds one")
    if len(y) < 2 * folds:
        raise UsageError(f"--folds {folds} needs at least {2 * folds} images; the split holds {len(y)}")
    # StratifiedKFold wants every class in every fold; a class rarer than K is spread as far as it goes
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "The least populated class has only N members"
        skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        return [np.sort(test) for _, test in skf.split(np.zeros(len(y)), y)]


def take_fold(data: ImageData, folds: int, fold: int, split: str, seed: int) -> ImageData:
    """`data` with its training set replaced by the other folds of `split` and its test set by fold `fold`."""
    if split not in ("train", "test"):
        raise UsageError(f"--fold-split must be train or test, got {split!r}")
    if not 0 <= fold < folds:
        raise UsageError(f"--fold must be 0-{folds - 1}, got {fold}")
    x, y = (data.train_x, data.train_y) if split == "train" else (data.test_x, data.test_y)
    files = data.train_files if split == "train" else data.test_files
    held = fold_indices(y, folds, seed)[fold]
    keep = np.setdiff1d(np.arange(len(y)), held)
    tr, te = torch.from_numpy(keep), torch.from_numpy(held)
    test_x = x[te]
    if hasattr(test_x, "load"):  # a streamed folder's files: the held-out fold is decoded now
        test_x = test_x.load()
    return ImageData(data.info, x[tr], y[tr], test_x, y[te], f"{data.source}, {split} fold {fold + 1} of {folds}",
                     [files[i] for i in held] if files is not None else None, data.skipped)
