"""Clean: the images of a data set whose label is probably wrong (`smallvision labels`), and a
ranking of every image by label quality (label_ranking.csv: page through the 100 most doubtful).

    from smallvision.clean import label_issues
    r = label_issues("mnist", split="test")      # k-fold out-of-fold probabilities, then cleanlab
    r["suspects"][:5]                             # [{"index", "file", "given", "suggested", "self_confidence"}, ...]

Out-of-fold probabilities come from `cv.cross_validate` (K models, each predicting the fold it
did not see, their runs kept). The ranking is confident learning (Northcutt et al., 2021) as
cleanlab implements it: ``cleanlab.filter.find_label_issues`` with its default rule
(``prune_by_noise_rate``: per pair of classes, as many suspects as the estimated joint
distribution of given and true labels says are mislabelled), ranked by self-confidence (the
probability the model gives the *given* label, lowest first). For image folders, pairs of
near-identical images (difference hash of 8 × 8, Hamming distance ≤ `near`) that carry
different labels are listed as well: one of each pair is mislabelled or the classes overlap.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallvision.errors import UsageError
from smallvision.runfolder import RunFolder


def default_recipe(spec: str) -> str:
    """The recipe `smallvision labels` trains its folds with: photo-transfer-fast (frozen ImageNet
    features, a linear head: seconds per fold) for a folder of photos when the weights are
    installed, else the photo default (recipes.default_recipe); a data set's own fast recipe where FOLD_RECIPES names
    one (fashion-mnist: fashion-fast); mnist-accurate otherwise (mnist-fast's net with random
    2-px shifts: any small image; its epochs raised for small folds, cv.IMAGE_BUDGET). The shifts
    matter: on a 6 000-image MNIST subset with 3 % of its labels flipped (benchmarks/label_noise.py)
    mnist-fast's folds found the flips at precision 0.83/0.84, recall 0.88/0.92 (seeds 0, 1);
    with the shifts 0.90/0.92 and 0.88/0.96."""
    from smallvision.recipes import default_recipe as photo_default

    photo = photo_default(spec)
    if photo is not None:  # a folder: the photo rule
        return "photo-fast" if photo == "photo-fast" else "photo-transfer-fast"  # photo-fast: no weights here
    return FOLD_RECIPES.get(spec, "mnist-accurate")


# Data sets with a recipe of their own that suits small folds better than mnist-accurate: on
# Fashion-MNIST's test set mnist-accurate's folds reached 87.8 % out of fold and flagged 649
# images (6.5 %), most of them the shirt / T-shirt / pullover confusions any model makes
FOLD_RECIPES = {"fashion-mnist": "fashion-fast"}


def dhash(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) uint8 -> (N,) uint64 difference hashes: grey 9 × 8, each bit 'left < right'."""
    import torch.nn.functional as F

    g = images.float().mean(1, keepdim=True)
    small = F.interpolate(g, size=(8, 9), mode="area")[:, 0]  # (N, 8, 9)
    bits = (small[:, :, 1:] > small[:, :, :-1]).reshape(len(images), 64).numpy()
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def near_duplicates(images: torch.Tensor, labels: np.ndarray, near: int = 2, limit: int = 500
                    ) -> list[tuple[int, int, int]]:
    """(i, j, distance) of image pairs whose hashes differ in at most `near` bits and whose labels
    differ, closest first (at most `limit`)."""
    h = dhash(images)
    out: list[tuple[int, int, int]] = []
    for start in range(0, len(h), 512):  # blocks of rows: memory stays N × 512
        x = h[start : start + 512, None] ^ h[None, :]
        dist = np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(-1)
        ii, jj = np.nonzero(dist <= near)
        for i, j in zip(ii + start, jj, strict=True):
            if i < j and labels[i] != labels[j]:
                out.append((int(i), int(j), int(dist[i - start, j])))
    return sorted(out, key=lambda t: (t[2], t[0], t[1]))[:limit]


def rank_issues(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Indices of probable label errors, most suspect first (cleanlab's confident learning)."""
    from cleanlab.filter import find_label_issues

    return np.asarray(find_label_issues(labels=labels, pred_probs=probs, return_indices_ranked_by="self_confidence"))


def rank_all(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every image, most doubtful label first: (order, quality). Quality is cleanlab's label
    quality score (self-confidence: the out-of-fold probability of the given label), so the
    ranking goes on past the images confident learning flags, in the same order (the flagged
    ones are ranked by the same score); ties keep the data set's order."""
    from cleanlab.rank import get_label_quality_scores

    quality = np.asarray(get_label_quality_scores(labels, probs, method="self_confidence"))
    return np.argsort(quality, kind="stable"), quality


def label_issues(dataset: str, split: str = "train", folds: int = 5, recipe: str | None = None,
                 runs_dir: str | Path = "runs", out: str | Path | None = None, top: int = 50, near: int = 2,
                 progress: bool = False, log: Any = None, **overrides: Any) -> dict[str, Any]:
    """Rank the probable label errors of `dataset`'s `split`; writes suspects.csv / .json, the
    top-`top` grid (suspects.png), near-duplicates with different labels (folders), and
    returns the summary. `overrides` go to every fold's run (as `api.train`'s)."""
    from smallvision.cv import cross_validate
    from smallvision.io import atomic_write_text, write_json
    from smallvision.report.plots import plot_image_grid

    if top < 1:
        raise UsageError(f"--top must be ≥ 1, got {top}")
    import cleanlab  # noqa: F401  (the 'labels' extra: missing, the command says so before any fold trains)

    recipe = recipe or default_recipe(dataset)
    # each fold holds 10 % of its training images out to fit its temperature: confident learning
    # thresholds probabilities per class, and label smoothing's underconfident ones (mnist-fast's
    # top probability averages 0.88) hid every one of the 106 out-of-fold errors on MNIST's test
    # set (0 suspects); calibrated, the known mislabels rank first
    overrides.setdefault("val_size", 0.1)
    cv = cross_validate(recipe, folds, split, runs_dir, progress=progress, log=log, scale_epochs=True,
                        dataset=dataset, **overrides)
    probs, labels, files, names = cv["probs"], cv["labels"], cv["files"], cv["class_names"]
    names = names or [str(i) for i in range(probs.shape[1])]
    ranked = rank_issues(probs, labels)
    order, quality = rank_all(probs, labels)
    flagged = np.zeros(len(labels), bool)
    flagged[ranked] = True
    suggested = probs.argmax(1)
    suspects = [{"index": int(i), **({"file": files[i]} if files is not None else {}),
                 "given": names[labels[i]], "suggested": names[suggested[i]],
                 "self_confidence": round(float(probs[i, labels[i]]), 4),
                 "suggested_probability": round(float(probs[i, suggested[i]]), 4)} for i in ranked]
    folder = Path(out) if out else Path(cv["cv_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    keys = ["index", *(["file"] if files is not None else []), "given", "suggested", "self_confidence",
            "suggested_probability"]
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(suspects)
    atomic_write_text(folder / RunFolder.SUSPECTS_CSV, buf.getvalue())
    _write_ranking(folder / RunFolder.LABEL_RANKING, order, quality, flagged, labels, suggested, probs, names, files)
    data = cv["data"]
    images = data.train_x if split == "train" else data.test_x
    shown = order[:top]  # the ranking's head, flagged or not: a user pages through the most doubtful
    if len(shown):
        pics = images[torch.from_numpy(shown)]
        pics = pics.load() if hasattr(pics, "load") else pics  # a streamed folder's files
        titles = [f"{'* ' if flagged[i] else ''}#{int(i)} {names[labels[i]]} → {names[suggested[i]]}\n"
                  f"p(given) {probs[i, labels[i]]:.2f}" for i in shown]
        if files is not None:
            titles = [f"{t}\n{Path(files[i]).name[:22]}" for t, i in zip(titles, shown, strict=True)]
        plot_image_grid([p.float() / 255 for p in pics], titles, folder / RunFolder.SUSPECTS_PNG,
                        suptitle=f"{dataset} {split}: the {len(shown)} most doubtful labels of {len(labels)} (* flagged "
                                 f"by confident learning: {len(ranked)}; given → suggested; {folds}-fold out-of-fold)",
                        cols=10)
    doc: dict[str, Any] = {k: v for k, v in cv.items() if k not in ("probs", "labels", "fold_of", "files", "class_names",
                                                                    "data")}
    doc.update(suspect_count=len(ranked), suspect_share=round(len(ranked) / max(len(labels), 1), 5),
               suspects_csv=str(folder / RunFolder.SUSPECTS_CSV), ranking_csv=str(folder / RunFolder.LABEL_RANKING),
               grid=str(folder / RunFolder.SUSPECTS_PNG) if len(shown) else None)
    if files is not None:  # image folders: near-identical images that carry different labels
        imgs = images.load() if hasattr(images, "load") else images
        pairs = near_duplicates(imgs, labels, near)
        doc["near_duplicates_with_different_labels"] = [
            {"a": files[i], "b": files[j], "label_a": names[labels[i]], "label_b": names[labels[j]], "bits": d}
            for i, j, d in pairs]
    write_json(folder / RunFolder.SUSPECTS_JSON, {**doc, "suspects": suspects})
    return {**doc, "suspects": suspects}


def _write_ranking(path: Path, order: np.ndarray, quality: np.ndarray, flagged: np.ndarray, labels: np.ndarray,
                   suggested: np.ndarray, probs: np.ndarray, names: list[str], files: list[str] | None) -> None:
    """label_ranking.csv: every image, most doubtful label first, the flagged ones marked."""
    from smallvision.io import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["rank", "index", *(["file"] if files is not None else []), "given", "suggested", "label_quality",
                "suggested_probability", "flagged"])
    for rank, i in enumerate(order, 1):
        w.writerow([rank, int(i), *([files[i]] if files is not None else []), names[labels[i]], names[suggested[i]],
                    round(float(quality[i]), 4), round(float(probs[i, suggested[i]]), 4), int(flagged[i])])
    atomic_write_text(path, buf.getvalue())
