"""K-fold cross-validation: `smallvision cv --folds K` and the out-of-fold probabilities that
`smallvision labels` ranks.

    from smallvision.cv import cross_validate
    cv = cross_validate("mnist-fast", folds=5, dataset="mnist", split="test")
    cv["mean_accuracy"], cv["std_accuracy"]; cv["probs"]   # (N, K) out-of-fold, one row per image

Each fold is an ordinary run (runs/<name>/fold-<i>/, kept: report, checkpoint, resume), trained
one after another on the other folds (``folds``/``fold``/``fold_split`` in its config) and tested
on its own; its final test is the fold's out-of-fold prediction, with the fold's calibrated
probabilities when it held a validation split out. The folder also gets ``cv.json`` (the
fold accuracies, mean ± std) and ``oof.npz`` (probabilities, labels, fold of each image).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallvision.errors import UsageError
from smallvision.runfolder import RunFolder

# Label checking trains K models on small folds: every fold model sees about this many images
# in all (epochs = this / fold size, at most MAX_EPOCHS): a 4 800-image fold gets 10 epochs of
# mnist-fast, 60 000 images as one mnist-fast epoch does
IMAGE_BUDGET, MAX_EPOCHS = 96_000, 20


def cv_name(recipe: str | None, dataset: str, split: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in dataset.split("/")[-1])[:40]
    return f"cv-{recipe or 'default'}-{stem}-{split}-{time.strftime('%Y%m%d-%H%M%S')}"


def cross_validate(recipe: str | None = None, folds: int = 5, split: str = "train", runs_dir: str | Path = "runs",
                   name: str | None = None, progress: bool = False, log: Any = None, scale_epochs: bool = False,
                   **overrides: Any) -> dict[str, Any]:
    """Train `folds` runs of `recipe` (plus `overrides`, as `api.train`), each tested on its own
    fold of `split`; returns the summary with the out-of-fold ``probs`` (N, K), ``labels``,
    ``fold_of`` (N,) and ``files`` (image folders). `scale_epochs`: set the epochs from
    IMAGE_BUDGET (label checking's small folds)."""
    from smallvision.api import make_config, train
    from smallvision.data import load_dataset
    from smallvision.data.folds import fold_indices
    from smallvision.io import write_json

    if folds < 2:
        raise UsageError(f"--folds must be at least 2 (each image is predicted by a model trained without it), got {folds}")
    cfg = make_config(recipe, **overrides)
    data = load_dataset(cfg.dataset, cfg.data_dir, cfg.data_args)
    y_all = data.train_y if split == "train" else data.test_y
    if split not in ("train", "test"):
        raise UsageError(f"--split must be train or test, got {split!r}")
    held = fold_indices(y_all, folds, cfg.seed)  # the same folds take_fold will make in each run
    files = data.train_files if split == "train" else data.test_files
    if scale_epochs:
        per_fold = len(y_all) - len(held[0])
        overrides = {**overrides, "epochs": int(max(cfg.epochs, min(MAX_EPOCHS, round(IMAGE_BUDGET / per_fold))))}
    name = name or cv_name(recipe or cfg.recipe, cfg.dataset, split)
    root = Path(runs_dir) / name
    root.mkdir(parents=True, exist_ok=True)
    k = data.info.num_classes
    probs = np.zeros((len(y_all), k), dtype=np.float32)
    fold_of = np.zeros(len(y_all), dtype=np.int64)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for i, idx in enumerate(held):
        if log:
            log(f"fold {i + 1}/{folds}: train on {len(y_all) - len(idx)}, predict {len(idx)}")
        # a fold's run is for its out-of-fold probabilities: no OOD detector to fit (unless asked)
        res = train(recipe, runs_dir=root, progress=progress, name=f"fold-{i}", folds=folds, fold=i, fold_split=split,
                    **{"ood": "none", **overrides})
        assert res.test_logits is not None
        t = (res.summary.get("calibration") or {}).get("temperature", 1.0)
        probs[idx] = (res.test_logits.float() / t).softmax(1).numpy()
        fold_of[idx] = i
        rows.append({"fold": i, "run_dir": str(res.run_dir), "images": len(idx),
                     "accuracy": res.summary["test_accuracy"], "train_seconds": res.summary["train_seconds"]})
    accs = np.array([r["accuracy"] for r in rows])
    labels = y_all.numpy() if isinstance(y_all, torch.Tensor) else np.asarray(y_all)
    doc = {"cv_dir": str(root), "recipe": recipe or cfg.recipe, "dataset": cfg.dataset, "split": split, "folds": folds,
           "images": len(labels), "epochs": overrides.get("epochs", cfg.epochs),
           "mean_accuracy": round(float(accs.mean()), 4), "std_accuracy": round(float(accs.std(ddof=1)), 4),
           "oof_accuracy": round(100 * float((probs.argmax(1) == labels).mean()), 4),
           "seconds": round(time.perf_counter() - t0, 1), "fold_runs": rows}
    write_json(root / RunFolder.CV, doc)
    np.savez_compressed(root / "oof.npz", probs=probs, labels=labels, fold=fold_of)
    return {**doc, "probs": probs, "labels": labels, "fold_of": fold_of, "files": files,
            "class_names": list(data.info.class_names), "data": data}
