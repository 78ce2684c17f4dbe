"""``--head exact``: the linear head on cached backbone features, solved rather than trained.

An L2-regularised multinomial logistic regression (the linear probe of the transfer-learning
literature, scikit-learn's ``LogisticRegression(C=...)``), minimised to convergence with L-BFGS on
every training feature at once. The strength is chosen by stratified 5-fold cross-validation on
the training split, so a small validation split is never used to tune it. Features are
standardised for the solve and the scaling folded back into the weights, so the result is a
plain ``nn.Linear`` on the raw features (what the model, predict and every export run).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

# the L2 strengths tried: λ × ‖W‖² / 2 added to the mean cross-entropy (scikit-learn's C = 1 / (λ N))
LAMBDAS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4)
FOLDS = 5  # 3 from FEW_FOLDS_ABOVE training images on: the choice is as stable, the solve ~2× quicker
FEW_FOLDS_ABOVE = 1000
CV_MAX = 1500  # images the cross-validation reads at most (a seeded draw); the final solve reads all
# at most this many labelled images in some class: the nearest class mean, not the logistic regression
# (benchmarks/results/few-labels.md, 7 photo sets + MNIST: ahead at 1-5 labels per class on every set and
# on average at 10; the logistic regression is ahead at 20)
CLASS_MEANS_UP_TO = 10


@dataclass
class HeadFit:
    weight: torch.Tensor  # (K, F) on the raw features
    bias: torch.Tensor  # (K,)
    lam: float  # the chosen L2 strength
    cv_accuracy: dict[float, float] = field(default_factory=dict)  # λ -> out-of-fold accuracy, %
    train_loss: float = 0.0
    kind: str = "logistic regression"  # or "class means" (fit_class_means)
    scale: float = 1.0  # class means: the inverse temperature
    folds: int = 0  # the cross-validation's folds (0: none)


def _solve(z: torch.Tensor, y: torch.Tensor, k: int, lam: float, init: torch.Tensor | None = None,
           iters: int = 200, smoothing: float = 0.0) -> torch.Tensor:
    """(F + 1, K) weights and bias minimising mean CE + λ/2 ‖W‖² on standardised features `z`."""
    w = torch.zeros(z.shape[1] + 1, k, dtype=z.dtype) if init is None else init.clone()
    w.requires_grad_(True)
    opt = torch.optim.LBFGS([w], lr=1, max_iter=iters, tolerance_grad=1e-5, tolerance_change=1e-7,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ w[:-1] + w[-1], y, label_smoothing=smoothing) + 0.5 * lam * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def _folds(y: torch.Tensor, k: int, seed: int) -> list[torch.Tensor]:
    """Stratified fold index of each example: each class dealt round-robin after a seeded shuffle."""
    g = torch.Generator().manual_seed(seed)
    fold = torch.empty(len(y), dtype=torch.long)
    for c in torch.unique(y):
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        fold[idx] = torch.arange(len(idx)) % k
    return [fold == i for i in range(k)]


def _subsample(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Indices of a seeded draw of `n` of `y`'s examples (all of them when there are fewer)."""
    if len(y) <= n:
        return torch.arange(len(y))
    g = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(y), generator=g)[:n]
    return keep.sort().values


def fit_class_means(feats: torch.Tensor, y: torch.Tensor, num_classes: int) -> HeadFit:
    """The nearest class mean as a linear layer: -s‖f - μ_c‖² = s(2 f·μ_c - ‖μ_c‖²) - s‖f‖², and the
    last term is the same for every class, so argmax and softmax are those of W = 2sμ, b = -s‖μ‖².
    The scale s (the softmax's inverse temperature) is chosen by leave-one-out log-loss on the
    training features when every class has two, else set from the spread of the class means."""
    x = feats.detach().float().cpu()
    y = y.detach().cpu().long()
    counts = torch.bincount(y, minlength=num_classes).float()
    mu = torch.zeros(num_classes, x.shape[1]).index_add_(0, y, x) / counts.clamp_min(1)[:, None]
    spread = torch.cdist(mu[counts > 0], mu[counts > 0]).pow(2)
    base = 1.0 / float(spread[spread > 0].median()) if (spread > 0).any() else 1.0
    scores: dict[float, float] = {}
    scale = base
    empty = counts == 0  # a class with no labelled image here: never predicted (not a mean at the origin)
    if counts[counts > 0].min() >= 2:  # leave-one-out: each image against the means of the others
        loo = mu[y] + (mu[y] - x) / (counts[y] - 1)[:, None]  # its own class's mean without it
        d = torch.cdist(x, mu).pow(2)
        d[torch.arange(len(y)), y] = (x - loo).pow(2).sum(1)
        d[:, empty] = float("inf")
        for factor in (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0):
            scores[factor] = round(float(F.cross_entropy(-base * factor * d, y)), 4)
        scale = base * min(scores, key=lambda f: scores[f])
    weight, bias = 2 * scale * mu, -scale * mu.pow(2).sum(1)
    bias[empty] = -1e4
    with torch.no_grad():
        loss = float(F.cross_entropy(x @ weight.T + bias, y))
    return HeadFit(weight.contiguous(), bias, 0.0, {}, loss, kind="class means", scale=scale)


def fit_head(feats: torch.Tensor, y: torch.Tensor, num_classes: int, seed: int = 0, smoothing: float = 0.0) -> HeadFit:
    """The head the data can support: the nearest class mean when some class has at most
    CLASS_MEANS_UP_TO labelled images, else the cross-validated logistic regression."""
    counts = torch.bincount(y.detach().cpu().long(), minlength=num_classes)
    if int(counts[counts > 0].min()) <= CLASS_MEANS_UP_TO:
        return fit_class_means(feats, y, num_classes)
    return fit_linear_head(feats, y, num_classes, seed, smoothing=smoothing)


def fit_linear_head(feats: torch.Tensor, y: torch.Tensor, num_classes: int, seed: int = 0,
                    lambdas: tuple[float, ...] = LAMBDAS, smoothing: float = 0.0) -> HeadFit:
    """The regularised multinomial logistic regression of `feats` (N, F) -> `y`, strength by k-fold CV.
    `smoothing`: the run's label smoothing, so that fine-tuning starts from the minimum of its own loss."""
    x = feats.detach().float().cpu()
    y = y.detach().cpu().long()
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mu) / sd
    counts = torch.bincount(y, minlength=num_classes)
    k = min(FOLDS if len(y) < FEW_FOLDS_ABOVE else 3, int(counts[counts > 0].min()))
    scores: dict[float, float] = {}
    if k >= 2 and len(lambdas) > 1:
        cv = _subsample(y, CV_MAX, seed)  # the strength is chosen on at most CV_MAX images (time)
        zc, yc = z[cv], y[cv]
        for m in _folds(yc, k, seed):  # each fold along the path from strong to weak, warm-started
            w = None
            for lam in lambdas:
                w = _solve(zc[~m], yc[~m], num_classes, lam, w, iters=40, smoothing=smoothing)
                pred = (zc[m] @ w[:-1] + w[-1]).argmax(1)
                scores[lam] = scores.get(lam, 0.0) + float((pred == yc[m]).sum())
        scores = {lam: round(100.0 * v / len(yc), 3) for lam, v in scores.items()}
        best = max(scores.values())
        lam = max(v for v, s in scores.items() if s == best)  # ties: the stronger regularisation
    else:  # a class with one image: no folds to choose on; the middle of the grid
        lam = lambdas[len(lambdas) // 2]
    w = _solve(z, y, num_classes, lam, smoothing=smoothing, iters=150)
    with torch.no_grad():
        loss = float(F.cross_entropy(z @ w[:-1] + w[-1], y, label_smoothing=smoothing))
    weight = (w[:-1] / sd[:, None]).T  # folded back: logits = x @ (W / sd) + (b - mu @ (W / sd))
    bias = w[-1] - (mu / sd) @ w[:-1]
    return HeadFit(weight.float().contiguous(), bias.float(), lam, scores, loss, folds=k if scores else 0)


def set_head(head: torch.nn.Module, fit: HeadFit) -> None:
    """Copy the solved weights into the model's final linear layer."""
    linear = head if isinstance(head, torch.nn.Linear) else [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        linear.weight.copy_(fit.weight.to(linear.weight))
        linear.bias.copy_(fit.bias.to(linear.bias))
