"""A generator's quality, judged by a smallvision classifier of the same data set, in the figures
papers report (classifier-based, as for MNIST in the GAN literature: Inception's place is taken by
the data set's own classifier) and in plainer ones:

- ``inception_score``: exp E[KL(p(y|x) ‖ p(y))] over the samples (Salimans et al. 2016), one split
  of all n: K (10) when every sample is one confident class and the classes are even; real MNIST
  test images reach about 9.9 with a 99.5 % classifier;
- ``frechet_distance`` (FID's formula, ‖μ₁-μ₂‖² + Tr(Σ₁+Σ₂-2(Σ₁Σ₂)^½)) and ``kid`` (the kernel
  distance of Bińkowski et al. 2018: the unbiased MMD² with the cubic polynomial kernel, averaged
  over 100 subsets of 1 000) on the classifier's penultimate features, the samples against the
  real test set; both have a floor above 0 at a finite n, so the same figures for **n real
  training images against the same test set** are reported beside them (``floor``): a generator
  can at best match it;
- ``memorised_pct``: the share of samples nearer (pixel L2) to their nearest training image than
  95 % of real test images are to theirs: unseen real images score 5 % by construction, a
  generator copying its training set far more;
- ``confident_pct``: the share the classifier puts in one class with probability ≥ 0.9; the class
  shares, how many hold ≥ 5 %, and the entropy of the class histogram over log K (1.0: even).

The default scorer is mnist-accurate for MNIST (99.5 %, 15 s) and scikit-learn's 8×8 digits,
fashion-fast for Fashion-MNIST and mnist-fast's recipe for other sets, trained once without label smoothing (which would cap every
probability near 0.9) and kept in ``<runs-dir>/_scorers/``. The real test images' own figures
are reported beside the samples': the ceiling a perfect generator would reach.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallvision.runfolder import RunFolder

SCORER_RECIPES = {"mnist": "mnist-accurate", "fashion-mnist": "fashion-fast", "digits": "mnist-accurate"}


def default_scorer(dataset: str, data_args: dict[str, Any], data_dir: str | None, runs_dir: str | Path,
                   log: Any = print, recipe: str | None = None) -> Path:
    """The scoring classifier's run folder for a data set, trained now if it is not there yet."""
    from smallvision.api import train

    recipe = recipe or SCORER_RECIPES.get(dataset, "mnist-fast")
    tag = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{dataset}{sorted(data_args.items())}-{recipe}")
    folder = Path(runs_dir) / "_scorers"
    run = folder / tag
    if (run / RunFolder.SUMMARY).is_file():
        return run
    log(f"training the scoring classifier ({recipe}, no label smoothing) into {run} ...")
    import shutil

    shutil.rmtree(run, ignore_errors=True)  # a scorer killed half-way is trained again
    train(recipe, runs_dir=folder, name=tag, dataset=dataset, data_args=data_args, data_dir=data_dir,
              label_smoothing=0.0, report=False, val_size=0, command="(scorer)")
    return run


class Scorer:
    """A classifier checkpoint used as the judge: its probabilities and penultimate features."""

    def __init__(self, checkpoint: str | Path, device: torch.device) -> None:
        from smallvision.modelfile import load_model

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
    return max(0.0, float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_cross))  # ≥ 0 (rounding)


def inception_score(probs: torch.Tensor) -> float:
    """exp E_x[KL(p(y|x) ‖ p(y))] over all rows of `probs` (N, K): between 1 and K."""
    p = probs.double().clamp_min(1e-12)
    marginal = p.mean(0, keepdim=True)
    return float((p * (p.log() - marginal.log())).sum(1).mean().exp())


def kernel_distance(a: torch.Tensor, b: torch.Tensor, subsets: int = 100, size: int = 1000, seed: int = 0
                    ) -> tuple[float, float]:
    """KID: the unbiased MMD² between feature sets a (N, F) and b (M, F) with the kernel
    k(x, y) = (x·y / F + 1)³, averaged over `subsets` seeded draws of `size` rows of each;
    (mean, standard deviation over the subsets). 0 in expectation for one distribution."""
    g = torch.Generator().manual_seed(seed)
    m = min(size, len(a), len(b))
    if m == len(a) == len(b):  # every subset would be the whole of both sets
        subsets = 1
    dim = a.shape[1]
    vals = []
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=g)[:m]].double()
        y = b[torch.randperm(len(b), generator=g)[:m]].double()
        kxx, kyy, kxy = ((u @ v.T / dim + 1) ** 3 for u, v in ((x, x), (y, y), (x, y)))
        off = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        vals.append(float(off - 2 * kxy.mean()))
    t = torch.tensor(vals)
    return float(t.mean()), float(t.std()) if len(vals) > 1 else 0.0


def nearest_distances(x: torch.Tensor, bank: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Each row of x (N, D)'s pixel L2 distance to its nearest row of bank (M, D), in chunks."""
    bank = bank.float()
    bank_sq = (bank * bank).sum(1)
    out = []
    for i in range(0, len(x), chunk):
        q = x[i : i + chunk].float()
        d2 = (q * q).sum(1, keepdim=True) - 2 * q @ bank.T + bank_sq
        out.append(d2.min(1).values.clamp_min(0).sqrt())
    return torch.cat(out)


def quality(probs: torch.Tensor, feats: torch.Tensor | None, ref_feats: torch.Tensor | None, class_names: list[str]
            ) -> dict[str, Any]:
    """The classifier figures of the module docstring for one set of samples, with the distances
    of their features to `ref_feats` unless the features are None."""
    k = probs.shape[1]
    shares = torch.bincount(probs.argmax(1), minlength=k).double() / len(probs)
    nz = shares[shares > 0]
    distances = {}
    if feats is not None and ref_feats is not None:
        kid, kid_std = kernel_distance(feats, ref_feats)
        distances = {"frechet_distance": round(frechet_distance(feats, ref_feats), 3), "kid": round(kid, 5),
                     "kid_std": round(kid_std, 5)}
    return {
        "inception_score": round(inception_score(probs), 3),
        "confident_pct": round(100.0 * float((probs.max(1).values >= 0.9).double().mean()), 2),
        "classes_with_5pct": int((shares >= 0.05).sum()), "classes": k,
        "min_class_pct": round(100.0 * float(shares.min()), 2),
        "class_entropy": round(float(-(nz * nz.log()).sum()) / math.log(k), 4),
        **distances,
        "class_pct": {name: round(100.0 * float(s), 2) for name, s in zip(class_names, shares, strict=True)},
        "samples": len(probs),
    }


class Judge:
    """The scorer and the real test set's features, loaded once, for the scores taken during
    training (--score-every): Inception Score, Fréchet distance and confident share only."""

    def __init__(self, scorer_path: str | Path, dataset: str, data_args: dict[str, Any], data_dir: str | None,
                 device: torch.device) -> None:
        from smallvision.data import load_dataset

        self.scorer = Scorer(scorer_path, device)
        self.real_feats = self.scorer.run(load_dataset(dataset, data_dir, data_args).test_x.float() / 255)[1]

    def quick(self, images01: torch.Tensor) -> dict[str, float]:
        probs, feats = self.scorer.run(images01)
        return {"inception_score": round(inception_score(probs), 3),
                "frechet_distance": round(frechet_distance(feats, self.real_feats), 3),
                "confident_pct": round(100.0 * float((probs.max(1).values >= 0.9).double().mean()), 2)}


MEMORISED_QUANTILE = 0.05  # a sample counts as a near copy when nearer than 95 % of real test images are


def score_images(images01: torch.Tensor, scorer_path: str | Path, dataset: str, data_args: dict[str, Any],
                 data_dir: str | None, device: torch.device, memorisation: bool = True,
                 asked: torch.Tensor | None = None) -> dict[str, Any]:
    """Quality of `images01` (N, C, H, W) in [0, 1], judged by the classifier at `scorer_path`:
    the samples' figures, the real test images' own (``real_test_images``: the ceiling), the floor
    of the distances at the same n (``floor``: n seeded training images against the test set) and
    the memorisation check against the training images. `asked`: the class each sample was drawn
    for (a conditional generator): ``asked_class_pct``, the share the scorer puts in that class."""
    from smallvision.data import load_dataset

    scorer = Scorer(scorer_path, device)
    names = [str(n) for n in (scorer.meta["dataset"].get("class_names") or range(scorer.model.num_classes))]
    data = load_dataset(dataset, data_dir, data_args)
    real_probs, real_feats = scorer.run(data.test_x.float() / 255)
    probs, feats = scorer.run(images01)
    out = quality(probs, feats, real_feats, names)
    if asked is not None:
        out["asked_class_pct"] = round(100.0 * float((probs.argmax(1) == asked.cpu()).double().mean()), 2)
    out["real_test_images"] = {k: v for k, v in quality(real_probs, None, None, names).items()
                               if k in ("inception_score", "confident_pct", "classes_with_5pct", "min_class_pct",
                                        "class_entropy")}
    n = min(len(images01), len(data.train_x))
    pick = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(0))[:n]
    floor_probs, floor_feats = scorer.run(data.train_x[pick].float() / 255)
    floor = quality(floor_probs, floor_feats, real_feats, names)
    out["floor"] = {"frechet_distance": floor["frechet_distance"], "kid": floor["kid"], "kid_std": floor["kid_std"],
                    "inception_score": floor["inception_score"], "samples": n,
                    "what": f"{n} real training images against the test set"}
    if memorisation:
        train = data.train_x.reshape(len(data.train_x), -1).float() / 255
        test_d = nearest_distances(data.test_x.reshape(len(data.test_x), -1).float() / 255, train)
        cut = float(torch.quantile(test_d, MEMORISED_QUANTILE))
        d = nearest_distances(images01.reshape(len(images01), -1).cpu(), train)
        out["memorised_pct"] = round(100.0 * float((d < cut).double().mean()), 2)
        out["memorisation"] = {"cut_l2": round(cut, 4), "expected_pct_unseen": 100 * MEMORISED_QUANTILE,
                               "median_nearest_l2": round(float(d.median()), 4),
                               "real_test_median_nearest_l2": round(float(test_d.median()), 4)}
    out["scorer"] = str(scorer_path)
    return out


_ROWS = (("asked_class_pct", "classified as the class asked for, %", "{:.2f}"),
         ("inception_score", "classifier Inception Score (of K)", "{:.3f}"),
         ("frechet_distance", "Fréchet distance to the test set (classifier features)", "{:.3f}"),
         ("kid", "kernel (KID) distance to the test set, ×1000", "{:.3f}"),
         ("memorised_pct", "near copies of training images, %", "{:.2f}"),
         ("confident_pct", "confident samples (p ≥ 0.9), %", "{:.2f}"),
         ("classes_with_5pct", "classes holding ≥ 5 %", "{}"),
         ("min_class_pct", "smallest class share, %", "{:.2f}"),
         ("class_entropy", "class entropy / log K", "{:.4f}"))


def _cell(sc: dict[str, Any], key: str, fmt: str) -> str:
    if key not in sc:
        return "—"
    v = sc[key] * 1000 if key == "kid" else sc[key]
    return fmt.format(v)


def score_rows(sc: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's quality table: each figure for the samples, the real test images (the ceiling)
    and the floor of the distances at the same n (real training images against the test set)."""
    real, floor = sc["real_test_images"], sc.get("floor", {})
    mem = {"memorised_pct": sc["memorisation"]["expected_pct_unseen"]} if "memorisation" in sc else {}
    return [{"figure": label, "samples": _cell(sc, k, fmt), "real test images": _cell({**real, **mem}, k, fmt),
             f"{floor.get('samples', '')} real training images": _cell(floor, k, fmt)}
            for k, label, fmt in _ROWS if k in sc]


def score_text(sc: dict[str, Any]) -> str:
    """The same figures as a few terminal lines."""
    rows = score_rows(sc)
    cols = list(rows[0])[1:]
    width = max(len(r["figure"]) for r in rows)
    head = f"quality (scorer {sc['scorer']}, {sc['samples']} samples)\n  {'':<{width}}  " + "  ".join(f"{c:>14}" for c in cols)
    return head + "".join(f"\n  {r['figure']:<{width}}  " + "  ".join(f"{r[c]:>14}" for c in cols) for r in rows)
