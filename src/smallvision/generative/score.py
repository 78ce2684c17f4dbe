"""A number for a generator's quality, from a smallvision classifier of the same data set.

- ``confident``: the share of samples the classifier puts in one class with probability ≥ 0.9
  (a digit a reader would recognise; a blurry in-between scores low);
- the spread over classes: each class's share, how many hold ≥ 5 %, and the entropy of the
  class histogram over log K (1.0: perfectly even; a collapsed generator scores low);
- ``frechet_distance``: FID's formula, ‖μ₁-μ₂‖² + Tr(Σ₁+Σ₂-2(Σ₁Σ₂)^½), on the classifier's
  penultimate features of the samples against the real test set (0: the same distribution).

The default scorer is mnist-accurate for MNIST (99.5 %, 15 s), fashion-fast for Fashion-MNIST and
mnist-fast's recipe for other sets, trained once without label smoothing (which would cap every
probability near 0.9) and kept in ``<runs-dir>/_scorers/``. The real test images' own figures
are reported beside the samples': the ceiling a perfect generator would reach.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallvision.engine.run import RunFolder

SCORER_RECIPES = {"mnist": "mnist-accurate", "fashion-mnist": "fashion-fast"}


def default_scorer(dataset: str, data_args: dict[str, Any], data_dir: str | None, runs_dir: str | Path,
                   log: Any = print, recipe: str | None = None) -> Path:
    """The scoring classifier's run folder for a data set, trained now if it is not there yet."""
    from smallvision import api

    recipe = recipe or SCORER_RECIPES.get(dataset, "mnist-fast")
    tag = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{dataset}{sorted(data_args.items())}-{recipe}")
    folder = Path(runs_dir) / "_scorers"
    run = folder / tag
    if (run / RunFolder.SUMMARY).is_file():
        return run
    log(f"training the scoring classifier ({recipe}, no label smoothing) into {run} ...")
    import shutil

    shutil.rmtree(run, ignore_errors=True)  # a scorer killed half-way is trained again
    api.train(recipe, runs_dir=folder, name=tag, dataset=dataset, data_args=data_args, data_dir=data_dir,
              label_smoothing=0.0, report=False, val_size=0, command="(scorer)")
    return run


class Scorer:
    """A classifier checkpoint used as the judge: its probabilities and penultimate features."""

    def __init__(self, checkpoint: str | Path, device: torch.device) -> None:
        from smallvision.engine.checkpoint import load_model

        self.model, self.meta = load_model(checkpoint, device)
        self.model.tta = ()  # one view: the score must not depend on how the scorer was tested
        self.device = device
        d = self.meta["dataset"]
        self.mean = torch.tensor(d["mean"], device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(d["std"], device=device).view(1, -1, 1, 1)
        self.input_shape = tuple(self.model.input_shape)

    @torch.inference_mode()
    def run(self, images01: torch.Tensor, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [0, 1], (N, C, H, W) -> (probabilities (N, K), features (N, F)), float64 on the CPU."""
        if tuple(images01.shape[1:]) != self.input_shape:
            from smallvision.errors import UsageError

            raise UsageError(f"the scorer takes {'×'.join(map(str, self.input_shape))} images, the samples are "
                             f"{'×'.join(map(str, images01.shape[1:]))}")
        probs, feats = [], []
        for i in range(0, len(images01), batch):
            x = (images01[i : i + batch].to(self.device).float() - self.mean) / self.std
            f = self.model.forward_features(x)
            probs.append(self.model.forward_head(f).float().softmax(1).double().cpu())
            feats.append(f.float().double().cpu())
        return torch.cat(probs), torch.cat(feats)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID's formula between two sets of feature vectors (N, F). Tr((Σ₁Σ₂)^½) is computed as the
    trace of (Σ₁^½ Σ₂ Σ₁^½)^½, a symmetric matrix: exact, and stable when a covariance is singular
    (a collapsed generator's is zero)."""
    mu1, mu2 = a.mean(0).numpy(), b.mean(0).numpy()
    s1, s2 = np.atleast_2d(np.cov(a.numpy(), rowvar=False)), np.atleast_2d(np.cov(b.numpy(), rowvar=False))
    r1 = _psd_sqrt(s1)
    tr_cross = float(np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum())
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_cross)


def quality(probs: torch.Tensor, feats: torch.Tensor, ref_feats: torch.Tensor, class_names: list[str]) -> dict[str, Any]:
    """The figures of the module docstring for one set of samples."""
    k = probs.shape[1]
    shares = torch.bincount(probs.argmax(1), minlength=k).double() / len(probs)
    nz = shares[shares > 0]
    return {
        "confident_pct": round(100.0 * float((probs.max(1).values >= 0.9).double().mean()), 2),
        "classes_with_5pct": int((shares >= 0.05).sum()), "classes": k,
        "min_class_pct": round(100.0 * float(shares.min()), 2),
        "class_entropy": round(float(-(nz * nz.log()).sum()) / math.log(k), 4),
        "frechet_distance": round(frechet_distance(feats, ref_feats), 3),
        "class_pct": {name: round(100.0 * float(s), 2) for name, s in zip(class_names, shares, strict=True)},
        "samples": len(probs),
    }


def reference_features(scorer: Scorer, dataset: str, data_args: dict[str, Any], data_dir: str | None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The scorer's (probabilities, features) on the data set's real test images."""
    from smallvision.data import load_dataset

    data = load_dataset(dataset, data_dir, data_args)
    return scorer.run(data.test_x.float() / 255)


def score_images(images01: torch.Tensor, scorer_path: str | Path, dataset: str, data_args: dict[str, Any],
                 data_dir: str | None, device: torch.device) -> dict[str, Any]:
    """Quality of `images01` (N, C, H, W) in [0, 1], judged by the classifier at `scorer_path`,
    with the real test set's own figures beside it (what a perfect generator would get)."""
    scorer = Scorer(scorer_path, device)
    names = list(scorer.meta["dataset"].get("class_names") or range(scorer.model.num_classes))
    real_probs, real_feats = reference_features(scorer, dataset, data_args, data_dir)
    probs, feats = scorer.run(images01)
    out = quality(probs, feats, real_feats, [str(n) for n in names])
    half = len(real_feats) // 2  # the real set against itself: the distance's noise floor
    real = quality(real_probs[:half], real_feats[:half], real_feats[half:], [str(n) for n in names])
    out["real_test_images"] = {k: real[k] for k in ("confident_pct", "classes_with_5pct", "min_class_pct",
                                                    "class_entropy", "frechet_distance")}
    out["scorer"] = str(scorer_path)
    return out
