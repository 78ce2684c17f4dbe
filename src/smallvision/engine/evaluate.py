"""Batched evaluation of a classifier on in-memory tensors."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F


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
        loss_sum += F.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
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
