"""Probabilities that mean what they say: temperature scaling (Guo et al., 2017).

One number T is fitted on the validation split's logits (minimising the negative log-likelihood
of softmax(logits / T)); every later probability divides the logits by T. T > 0 never moves an
argmax, so accuracy is unchanged; only the confidence is. Calibration errors come from
torchmetrics (ECE: the count-weighted mean |accuracy - confidence| over 15 equal-width
confidence bins; MCE: the largest bin gap).

    from smallvision.calibration import fit_temperature, calibration_errors
    t = fit_temperature(val_logits, val_labels)
    calibration_errors(test_logits / t, test_labels)   # {"ece": ..., "mce": ...}

`api.calibrate(run)` does it for a finished run: it re-creates the run's seeded validation
split, fits T, and writes it into the run's checkpoint (``meta["calibration"]``), which
`predict`, `serve`, `evaluate` and `export` then use. This module is below the loops (the
trainer calls it): it reads no run and imports no API.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

BINS = 15
MIN_IMAGES = 50  # fewer validation images, or none misclassified: no temperature (see why_not)


def why_not(logits: torch.Tensor, labels: torch.Tensor) -> str:
    """'' when a temperature can be fitted on this split, else the reason in a few words. With no
    mistake on the split the likelihood keeps rising as T -> 0 (every answer certain): seen on
    hymenoptera's 24 validation photos, all right, where T hit its floor and every test photo,
    wrong ones too, got probability 1.00."""
    n = len(labels)
    wrong = int((logits.argmax(1).cpu() != labels.cpu()).sum())
    if n < MIN_IMAGES:
        return f"{n} validation images (calibration needs at least {MIN_IMAGES})"
    if wrong == 0:
        return f"no mistakes on the {n} validation images, so no temperature can be fitted"
    return ""


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, steps: int = 200) -> float:
    """The T > 0 that minimises NLL(softmax(logits / T), labels), by L-BFGS on log T (so T stays
    positive), from T = 1. A degenerate split (one image, all correct at ~1.0) can push T to
    its bounds; it is clamped to [0.05, 20]."""
    # clones: evaluate's logits are inference-mode tensors, which autograd may not save
    z, y = logits.detach().float().cpu().clone(), labels.detach().long().cpu().clone()
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    t = float(log_t.detach().exp())
    return min(max(t, 0.05), 20.0) if t == t else 1.0  # NaN (no usable gradient): no change


def calibration_errors(logits: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> dict[str, float]:
    """ECE and MCE (both in [0, 1]) and the NLL of softmax(logits)."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    z, y = logits.detach().float().cpu(), labels.detach().long().cpu()
    p, k = z.softmax(1), z.shape[1]
    return {"ece": float(multiclass_calibration_error(p, y, k, n_bins=bins, norm="l1")),
            "mce": float(multiclass_calibration_error(p, y, k, n_bins=bins, norm="max")),
            "nll": float(F.cross_entropy(z, y))}


def reliability(logits: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> dict[str, list[float]]:
    """Per confidence bin: mean confidence, accuracy and image count (the reliability diagram's bars)."""
    p = logits.detach().float().cpu().softmax(1)
    conf, pred = p.max(1)
    right = (pred == labels.cpu()).float()
    edges = torch.linspace(0, 1, bins + 1)
    which = torch.bucketize(conf, edges[1:-1], right=True)  # bin i holds (edges[i], edges[i+1]]
    out: dict[str, list[float]] = {"lower": edges[:-1].tolist(), "upper": edges[1:].tolist(),
                                   "confidence": [], "accuracy": [], "count": []}
    for i in range(bins):
        m = which == i
        n = int(m.sum())
        out["count"].append(n)
        out["confidence"].append(float(conf[m].mean()) if n else float("nan"))
        out["accuracy"].append(float(right[m].mean()) if n else float("nan"))
    return out


def summarise(val_logits: torch.Tensor, val_y: torch.Tensor, test_logits: torch.Tensor | None = None,
              test_y: torch.Tensor | None = None) -> dict[str, Any]:
    """Fit T on validation; the errors before and after on validation (and test, when given)."""
    t = fit_temperature(val_logits, val_y)
    doc: dict[str, Any] = {"method": "temperature scaling", "temperature": round(t, 6), "fitted_on": "validation",
                           "val_images": len(val_y), "bins": BINS}
    splits = [("val", val_logits, val_y)] + ([("test", test_logits, test_y)] if test_logits is not None else [])
    for split, z, y in splits:
        before, after = calibration_errors(z, y), calibration_errors(z / t, y)
        for key in before:
            doc[f"{split}_{key}_before"], doc[f"{split}_{key}_after"] = round(before[key], 6), round(after[key], 6)
    return doc
