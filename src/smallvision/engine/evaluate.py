"""Batched evaluation of a classifier on in-memory tensors."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def task_loss(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None, label_smoothing: float = 0.0,
              reduction: str = "mean") -> torch.Tensor:
    """The training loss, from the targets' form: class indices (N,) -> cross-entropy; multi-hot
    floats (N, K), a multi-label set -> binary cross-entropy on each logit (the mean over the K
    classes per image; ``reduction='sum'`` sums those per-image means)."""
    if y.ndim == 2:
        loss = F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="sum" if reduction == "sum" else "mean")
        return loss / y.shape[1] if reduction == "sum" else loss
    return F.cross_entropy(logits, y, weight=weight, label_smoothing=label_smoothing, reduction=reduction)


def n_correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Images right: the top class is the label; multi-label: every class's p ≥ 0.5 decision
    matches (exact match, the loop's threshold-free selection figure)."""
    if y.ndim == 2:
        return ((logits > 0) == (y > 0.5)).all(1).sum()
    return (logits.argmax(1) == y).sum()


@dataclass
class EvalResult:
    loss: float
    accuracy: float  # percent
    n: int
    logits: torch.Tensor | None = None  # (N, K) float32 on the CPU, when asked for


def eval_batch_size(x: torch.Tensor) -> int:
    """2 000 small images per forward, fewer big ones (about 2 M input values: 13 at 3×224×224),
    so a 224-px folder does not need gigabytes of activations at once."""
    per = max(1, int(torch.tensor(x.shape[1:]).prod())) if len(x.shape) > 1 else 1
    return max(8, min(2000, (2 << 20) // per))


@torch.inference_mode()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 0,
             autocast: contextlib.AbstractContextManager | None = None, keep_logits: bool = False) -> EvalResult:
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    kept = []
    batch_size = batch_size or eval_batch_size(x)
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        with autocast or contextlib.nullcontext():
            logits = model(xb)
        logits = logits.float()
        loss_sum += task_loss(logits, yb, reduction="sum")
        correct += n_correct(logits, yb)
        if keep_logits:
            kept.append(logits.cpu())
    model.train(was_training)
    n = len(x)
    return EvalResult(
        loss=float(loss_sum) / max(n, 1),
        accuracy=100.0 * int(correct) / max(n, 1),
        n=n,
        logits=torch.cat(kept) if keep_logits and kept else None,
    )
