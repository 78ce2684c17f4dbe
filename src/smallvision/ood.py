""""None of these": out-of-distribution scores and the threshold that turns them into an answer.

A classifier always picks one of its classes, even for a photo of something it was never shown.
Here every trained classifier also gets an **OOD score** (higher: less like its training images)
and a **threshold**: an image scoring above it is answered "none of these".

- The score comes from a registered **detector** (`DETECTORS`), fitted after training on the
  training images' pre-logit features (`Classifier.forward_features`) and logits:
  ``msp`` (1 - the maximum softmax probability, Hendrycks & Gimpel 2017), ``energy`` (the negative
  log-sum-exp of the logits, Liu et al. 2020), ``mahalanobis`` (the smallest class-conditional
  Mahalanobis distance with one shared, shrunk covariance, Lee et al. 2018), ``knn`` (the distance
  to the k-th nearest training feature on the unit sphere, Sun et al. 2022) and ``vim`` (the
  feature's norm outside the principal subspace, scaled, minus the energy: Wang et al. 2022).
  Which one is the default was measured (benchmarks/ood.py, docs/ood.md).
- The **threshold** is the `accept` quantile (0.97: 97 % of validation images accepted) of the
  validation split's scores: never the test set, never OOD images. The scores' quantiles are
  stored too, so ``--accept`` picks another operating point later without the data. With fewer
  than MIN_VALIDATION validation images (or none) the quantiles also take the training sample's
  scores, each from a detector fitted on the other half of the sample (`cross_fitted_scores`);
  the network did see those images, so they can run a little more familiar than new ones. The
  summary says which, and the share of the test split accepted is measured either way.

The detector is a module with buffers only, attached to the model as ``model.ood``: its tensors
travel in the checkpoint (``ood.*`` keys) and in an exported ONNX graph (a second output,
``ood_score``), and the threshold in their metadata (``meta["ood"]``). Below the engine: it reads
no run.

    from smallvision.ood import fit_detector, scores
    det = fit_detector("knn", train_feats, train_y, train_logits, model.head)
    logits, s = scores(model, x)            # s > meta["ood"]["threshold"]: "none of these"
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from smallvision.errors import UsageError
from smallvision.registry import Contract, Registry

DEFAULT = "vim-energy"  # the best mean AUROC and FPR@95 over every run and OOD set: benchmarks/results/ood.md (docs/ood.md)
FIT_SMALL, FIT_LARGE = 5000, 1000  # training images the detector is fitted on (small images / ≥ 64 px)
QUANTILES = 201  # stored quantiles of the validation scores (every 0.5 %): --accept later


@dataclass(frozen=True)
class DetectorContract(Contract):
    uses_features: bool = True  # reads the pre-logit features (else the logits alone)
    module: type = nn.Module  # the Detector class a checkpoint's ood.* tensors are loaded into


class Detector(nn.Module):
    """Buffers only; `forward(features, logits)` -> (B,) OOD scores, higher = stranger."""

    def put(self, **tensors: torch.Tensor) -> Detector:
        for k, v in tensors.items():
            self.register_buffer(k, v.detach().float().cpu().contiguous())
        return self


DetectorFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, nn.Linear], Detector]
DETECTORS: Registry[DetectorFn] = Registry("OOD detector", contract=DetectorContract)


class MSP(Detector):
    def forward(self, f: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return 1 - z.softmax(1).amax(1)


class Energy(Detector):
    def forward(self, f: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return -torch.logsumexp(z, 1)


class Mahalanobis(Detector):
    means: torch.Tensor  # (K, F)
    precision: torch.Tensor  # (F, F)

    def forward(self, f: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        fp = f @ self.precision  # (B, F)
        d = (fp * f).sum(1, keepdim=True) - 2 * fp @ self.means.T + ((self.means @ self.precision) * self.means).sum(1)
        return d.amin(1)


def knn_k(bank_size: int) -> int:
    """Sun et al. use k = 50 of CIFAR-10's 50 000 (0.1 %) and keep k in proportion when they
    subsample the bank; the same share here, at least 1."""
    return max(1, round(bank_size / 1000))


class KNN(Detector):
    bank: torch.Tensor  # (N, F), unit rows

    def forward(self, f: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        sim = F.normalize(f, dim=1) @ self.bank.T  # cosine; the k-th largest is the k-th nearest
        kth = sim.topk(knn_k(self.bank.shape[0]), dim=1).values[:, -1]
        return (2 - 2 * kth).clamp_min(0).sqrt()


class ViM(Detector):
    origin: torch.Tensor  # (F,)
    residual: torch.Tensor  # (F, F - D): the complement of the principal subspace
    alpha: torch.Tensor  # 0-d

    def forward(self, f: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.alpha * ((f - self.origin) @ self.residual).norm(dim=1) - torch.logsumexp(z, 1)


@DETECTORS.register("msp", "1 - the maximum softmax probability (Hendrycks & Gimpel 2017)", uses_features=False, module=MSP)
def msp(f: torch.Tensor, y: torch.Tensor, z: torch.Tensor, head: nn.Linear) -> Detector:
    return MSP()


@DETECTORS.register("energy", "the negative log-sum-exp of the logits (Liu et al. 2020)", uses_features=False, module=Energy)
def energy(f: torch.Tensor, y: torch.Tensor, z: torch.Tensor, head: nn.Linear) -> Detector:
    return Energy()


@DETECTORS.register("mahalanobis", "smallest class-conditional Mahalanobis distance, shared covariance (Lee et al. 2018)", module=Mahalanobis)
def mahalanobis(f: torch.Tensor, y: torch.Tensor, z: torch.Tensor, head: nn.Linear) -> Detector:
    f, k = f.double(), head.out_features
    means = torch.stack([f[y == c].mean(0) if (y == c).any() else f.mean(0) for c in range(k)])
    centred = f - means[y]
    cov = centred.T @ centred / max(len(f) - 1, 1)
    # Ledoit-Wolf shrinkage towards a scaled identity: fewer images than feature dimensions
    # (500 photos, 1 280 features) leave the sample covariance singular
    from sklearn.covariance import ledoit_wolf_shrinkage

    shrink = float(ledoit_wolf_shrinkage(centred.numpy(), assume_centered=True))
    mu = torch.trace(cov) / cov.shape[0]
    cov = (1 - shrink) * cov + shrink * mu * torch.eye(cov.shape[0], dtype=cov.dtype)
    return Mahalanobis().put(means=means, precision=torch.linalg.pinv(cov, hermitian=True))


@DETECTORS.register("knn", "distance to the k-th nearest training feature, unit-normalised (Sun et al. 2022)", module=KNN)
def knn(f: torch.Tensor, y: torch.Tensor, z: torch.Tensor, head: nn.Linear) -> Detector:
    return KNN().put(bank=F.normalize(f.float(), dim=1))


def vim_dim(n_feat: int) -> int:
    """ViM's principal dimensions for `n_feat` features (the paper's choice)."""
    return 1000 if n_feat >= 2048 else 512 if n_feat >= 768 else n_feat // 2


def detector_for(name: str, n_fit: int, n_feat: int, cross_fitted: bool) -> tuple[str, str]:
    """The detector a run can fit, and why when it is not `name`: ViM estimates a principal subspace
    of vim_dim features, which takes more images than that (in each half, when the threshold's
    scores are cross-fitted); with fewer (a few labelled photos) the k-NN distance stands in."""
    have = n_fit // 2 if cross_fitted else n_fit
    if name not in ("vim", "vim-energy") or have > vim_dim(n_feat):
        return name, ""
    return "knn", (f"knn, not {name}: vim's {vim_dim(n_feat)}-dimensional principal subspace needs more "
                   f"{'images in each half' if cross_fitted else 'images'} than the {n_fit} it would be fitted on")


@DETECTORS.register("vim", "virtual logit: residual norm off the principal subspace minus energy (Wang et al. 2022)", module=ViM)
def vim(f: torch.Tensor, y: torch.Tensor, z: torch.Tensor, head: nn.Linear) -> Detector:
    f = f.double()
    w, b = head.weight.detach().double().cpu(), head.bias.detach().double().cpu() if head.bias is not None else None
    origin = -torch.linalg.pinv(w) @ b if b is not None else torch.zeros(f.shape[1], dtype=f.dtype)
    x = f - origin
    n_feat = f.shape[1]
    dim = vim_dim(n_feat)
    if len(x) <= dim:  # a few labelled photos span fewer dimensions: the subspace they can estimate, else their
        dim = max(1, len(x) // 2)  # residual norms are ~0 and alpha (their mean's inverse) explodes
    _, vecs = torch.linalg.eigh(x.T @ x / len(x))  # ascending eigenvalues
    residual = vecs[:, : n_feat - dim]
    norms = (x @ residual).norm(dim=1)
    alpha = z.double().amax(1).mean() / norms.mean().clamp_min(1e-12)
    return ViM().put(origin=origin, residual=residual, alpha=alpha)


class ViMEnergy(ViM):
    centre: torch.Tensor  # (2,): the medians of ViM's and energy's scores on the fitting sample
    spread: torch.Tensor  # (2,): their interquartile ranges

    def forward(self, f: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        both = torch.stack([super().forward(f, z), -torch.logsumexp(z, 1)], 1)
        return ((both - self.centre) / self.spread).amax(1)


@DETECTORS.register("vim-energy", "the larger of ViM's and energy's scores, each in units of its spread on the "
                    "training sample", module=ViMEnergy)
def vim_energy(f: torch.Tensor, y: torch.Tensor, z: torch.Tensor, head: nn.Linear) -> Detector:
    """ViM flags features far from the training images' subspace; energy flags images the classifier
    has no strong answer for (a photo centred as a digit can sit near the digits' features and still
    get no confident class). Each score is standardised by the median and interquartile range of its
    own scores on the fitting sample, and the larger counts."""
    v = vim(f, y, z, head)
    both = torch.stack([v(f.float(), z.float()), -torch.logsumexp(z.float(), 1)], 1).double()
    q = torch.quantile(both, torch.tensor([0.25, 0.5, 0.75], dtype=both.dtype), dim=0)
    return ViMEnergy().put(origin=v.origin, residual=v.residual, alpha=v.alpha, centre=q[1],
                           spread=(q[2] - q[0]).clamp_min(1e-6))


def fit_indices(n: int, seed: int, image_pixels: int) -> list[int]:
    """The seeded sample of a training split (of `n` images) a detector is fitted on, sorted."""
    limit = FIT_SMALL if image_pixels <= 64 * 64 else FIT_LARGE
    return sorted(torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].tolist())


def fit_detector(name: str, feats: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor,
                 head: nn.Linear) -> Detector:
    """A registered detector fitted on training features (N, F), labels (N,) and raw logits (N, K)."""
    det = DETECTORS.get(name)(feats.detach().float().cpu(), labels.detach().long().cpu(),
                              logits.detach().float().cpu(), head)
    det.name = name  # type: ignore[assignment]
    return det.eval()


MIN_VALIDATION = 200  # fewer validation images: the quantiles also take cross-fitted training scores


def cross_fitted_scores(name: str, feats: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor,
                        head: nn.Linear) -> torch.Tensor:
    """Scores of the training sample by a detector that did not see them: fitted on one half,
    scoring the other (two folds, seeded). A training image in its own k-NN bank or class mean
    would look more familiar than any new image; the network itself did see them, so for a
    fine-tuned model these still run a little low."""
    n = len(feats)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    halves = (perm[: n // 2], perm[n // 2 :])
    out = torch.empty(n)
    for fit_on, score_on in (halves, halves[::-1]):
        det = fit_detector(name, feats[fit_on], labels[fit_on], logits[fit_on], head)
        out[score_on] = score_features(det, feats[score_on], logits[score_on])
    return out


def threshold_scores(name: str, det: Detector, feats: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor,
                     head: nn.Linear, val: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, str]:
    """The scores the threshold's quantiles are taken on, and what they are: the validation
    split's (≥ MIN_VALIDATION images), else those and the training sample's cross-fitted ones
    (a 95 % quantile of 24 photos is their second largest score)."""
    v = score_features(det, *val) if val is not None else torch.empty(0)
    if len(v) >= MIN_VALIDATION:
        return v, "validation"
    crossed = cross_fitted_scores(name, feats, labels, logits, head)
    return torch.cat([v, crossed]), ("validation + training (cross-fitted)" if len(v) else "training (cross-fitted)")


def empty_detector(name: str, tensors: dict[str, torch.Tensor]) -> Detector:
    """A detector rebuilt from a checkpoint's ``ood.*`` tensors (their names without the prefix)."""
    det = DETECTORS.entry(name).contract.module().put(**tensors)  # an unknown name: the registry's one-line error
    det.name = name  # type: ignore[assignment]
    return det.eval()


@torch.inference_mode()
def features_and_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-logit features and raw logits (one view, no temperature) of in-memory inputs, fp32, on the CPU."""
    was = model.training
    model.eval()
    fs, zs = [], []
    bs = batch_size or max(8, min(2000, (2 << 20) // max(1, x[0].numel())))  # about 2 M input values a batch
    dev = next(model.parameters()).device
    for i in range(0, len(x), bs):
        f = model.forward_features(x[i : i + bs].to(dev)).float()
        fs.append(f.cpu())
        zs.append(model.forward_head(f).float().cpu())
    model.train(was)
    return torch.cat(fs), torch.cat(zs)


def score_features(det: Detector, f: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return det(f.float().cpu(), z.float().cpu())


def scores(model: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the model's logits as predict gives them, OOD scores or None when the model carries no
    detector). One pass through the backbone unless the model averages test-time views; an
    exported model (`modelfile.OnnxModel`) answers from its graph's second output."""
    if hasattr(model, "scores"):
        return model.scores(x)
    det = getattr(model, "ood", None)
    if det is None:
        return model(x).float(), None
    f = model.forward_features(x).float()
    z = model.forward_head(f).float()
    logits = model(x).float() if model.tta_views else z / model.temperature
    return logits, det(f, z)


def quantiles(val_scores: torch.Tensor) -> list[float]:
    q = torch.quantile(val_scores.double(), torch.linspace(0, 1, QUANTILES, dtype=torch.float64))
    return [float(v) for v in q]


def threshold_at(doc: dict[str, Any], accept: float | None = None) -> float:
    """The threshold that accepts `accept` (0-1] of the images the quantiles were taken on:
    interpolated between the stored quantiles; the stored threshold when `accept` is None."""
    if accept is None:
        return float(doc["threshold"])
    if not 0 < accept <= 1:
        raise UsageError(f"--accept must be in (0, 1], the share of in-distribution images to accept; got {accept:g}")
    qs = torch.tensor(doc["quantiles"], dtype=torch.float64)
    pos = accept * (len(qs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(qs) - 1)
    return float(qs[lo] + (qs[hi] - qs[lo]) * (pos - lo))


MIN_ACCEPT = 0.9  # examples of what to refuse may lower the acceptance of the run's own images this far, no further


def accept_from_examples(doc: dict[str, Any], out_scores: torch.Tensor, floor: float = MIN_ACCEPT) -> float:
    """The operating point that best separates the run's own images from a user's examples of what
    it should refuse: among the stored quantiles' steps from the run's `accept` down to `floor`,
    the share `a` that answers the fewest images wrongly, (1 - a) of its own plus the share of the
    examples accepted (ties: the larger a). Examples only tighten the threshold: that they are far
    says nothing of the kinds of image they do not show."""
    out = out_scores.double()
    steps = len(doc["quantiles"]) - 1
    start = float(doc["accept"])
    best_cost, best = float("inf"), start
    # the run's own accept first, then the stored steps below it (never above: examples only tighten)
    for a in [start] + [i / steps for i in range(math.floor(start * steps - 1e-9), -1, -1)]:
        if a < floor - 1e-9:
            break
        cost = (1 - a) + float((out <= threshold_at(doc, a)).double().mean())
        if cost < best_cost - 1e-12:
            best_cost, best = cost, a
    return best


def describe(doc: dict[str, Any]) -> str:
    """The threshold's provenance in one line (report, model card)."""
    ex = doc.get("examples")
    return (f"{doc['detector']}, threshold {doc['threshold']:.4g} accepting {doc['accept']:.1%} of "
            f"{doc['quantile_images']} {doc['quantiles_on']} images; fitted on {doc['fit_images']} training images"
            + (f" ({doc['why']})" if doc.get("why") else "")
            + (f"; set by {ex['images']} examples to refuse ({ex['accepted_percent']} % of them accepted)" if ex else ""))


def auroc(in_scores: torch.Tensor, out_scores: torch.Tensor) -> float:
    """Area under the ROC curve of telling OOD (positive: higher score) from in-distribution."""
    from sklearn.metrics import roc_auc_score

    y = torch.cat([torch.zeros(len(in_scores)), torch.ones(len(out_scores))])
    return float(roc_auc_score(y.numpy(), torch.cat([in_scores, out_scores]).double().numpy()))


def fpr_at_95(in_scores: torch.Tensor, out_scores: torch.Tensor) -> float:
    """The share of OOD images accepted at the threshold that accepts 95 % of in-distribution ones."""
    t = torch.quantile(in_scores.double(), 0.95)
    return float((out_scores.double() <= t).float().mean())
