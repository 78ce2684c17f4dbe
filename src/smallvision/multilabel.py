"""Multi-label classification: one sigmoid per class, a decision threshold chosen on the
validation split, and the metrics multi-label papers and torchmetrics report.

A multi-label data set (`data/multilabel.py`) gives multi-hot float targets (N, K); the loss is
binary cross-entropy on the logits (`engine.evaluate.task_loss`). The training loop's
"accuracy" is the exact-match ratio at p = 0.5 (every label of the image right), so selection
and early stopping need no threshold. After training, `summarise` picks the threshold(s) that
maximise macro-F1 on validation — one for all classes, or one per class — and the test split is
scored with them: per-class average precision (threshold-free), precision/recall/F1 per class,
micro- and macro-F1, mAP and exact match. The thresholds travel in the checkpoint, so predict,
serve and exports return every label above its own threshold.
"""

from __future__ import annotations

from typing import Any

import torch

GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 ... 0.95
RULES = ("global", "per-class")
DEFAULT = 0.5  # without a validation split


def parse_rule(rule: str) -> str | float:
    """'global', 'per-class' or a fixed threshold in (0, 1)."""
    if rule in RULES:
        return rule
    from smallvision.errors import UsageError

    try:
        t = float(rule)
    except ValueError:
        raise UsageError(f"--threshold takes global, per-class or a number in (0, 1); got {rule!r}") from None
    if not 0 < t < 1:
        raise UsageError(f"--threshold must be in (0, 1), got {t:g}")
    return t


def decide(probs: torch.Tensor, thresholds: list[float] | torch.Tensor) -> torch.Tensor:
    """(N, K) bool: each class whose probability reaches its threshold."""
    return probs >= torch.as_tensor(thresholds, dtype=probs.dtype).view(1, -1)


def _f1(pred: torch.Tensor, y: torch.Tensor, average: str) -> torch.Tensor:
    from torchmetrics.functional.classification import multilabel_f1_score

    return multilabel_f1_score(pred.float(), y.long(), num_labels=y.shape[1], threshold=0.5, average=average,
                               zero_division=0)


def choose_thresholds(probs: torch.Tensor, y: torch.Tensor, rule: str | float) -> list[float]:
    """The thresholds of `rule` on validation probabilities: one from GRID maximising macro-F1
    ('global'), each class's own F1-maximising one ('per-class'; ties go to the one nearest 0.5),
    or the given number for every class."""
    k = y.shape[1]
    if isinstance(rule, float):
        return [rule] * k
    scores = torch.stack([_f1(probs >= t, y, "none") for t in GRID])  # (T, K)
    grid = torch.tensor(GRID)
    tie_break = -(grid - DEFAULT).abs() * 1e-6  # equal F1: the threshold nearest 0.5
    if rule == "global":
        return [round(float(grid[int((scores.mean(1) + tie_break).argmax())]), 2)] * k
    return [round(float(grid[int(i)]), 2) for i in (scores + tie_break[:, None]).argmax(0)]


def metrics(logits: torch.Tensor, y: torch.Tensor, thresholds: list[float]) -> dict[str, Any]:
    """Test figures at `thresholds`: per class AP/precision/recall/F1/support, and the averages."""
    from torchmetrics.functional.classification import (
        multilabel_average_precision,
        multilabel_precision,
        multilabel_recall,
    )

    probs, yl = logits.float().sigmoid().cpu(), y.cpu().long()
    k = y.shape[1]
    pred = decide(probs, thresholds).float()
    kw = {"num_labels": k, "threshold": 0.5, "average": "none", "zero_division": 0}
    ap = multilabel_average_precision(probs, yl, num_labels=k, average="none")
    exact = float((pred.bool() == yl.bool()).all(1).float().mean() * 100)
    return {
        "exact_match": round(exact, 4), "macro_f1": round(float(_f1(pred, yl, "macro")), 4),
        "micro_f1": round(float(_f1(pred, yl, "micro")), 4), "map": round(float(torch.nan_to_num(ap).mean()), 4),
        "per_class": {"ap": torch.nan_to_num(ap).tolist(), "precision": multilabel_precision(pred, yl, **kw).tolist(),
                      "recall": multilabel_recall(pred, yl, **kw).tolist(), "f1": _f1(pred, yl, "none").tolist(),
                      "support": yl.sum(0).tolist()},
        "images": len(y),
    }


def summarise(val_logits: torch.Tensor | None, val_y: torch.Tensor | None, test_logits: torch.Tensor,
              test_y: torch.Tensor, rule: str | float) -> dict[str, Any]:
    """The thresholds (chosen on validation; 0.5 without one, said) and the test figures at them."""
    k = test_y.shape[1]
    if val_logits is None or val_y is None:
        thresholds, how = [rule if isinstance(rule, float) else DEFAULT] * k, (
            "fixed" if isinstance(rule, float) else "0.5: no validation split to choose on")
        val_macro = None
    else:
        thresholds = choose_thresholds(val_logits.float().sigmoid().cpu(), val_y.cpu(), rule)
        how = "fixed" if isinstance(rule, float) else f"{rule}, maximising macro-F1 on {len(val_y)} validation images"
        val_macro = round(float(_f1(decide(val_logits.float().sigmoid().cpu(), thresholds), val_y.cpu(), "macro")), 4)
    m = metrics(test_logits, test_y, thresholds)
    return {"rule": rule if isinstance(rule, str) else "fixed", "chosen": how, "values": thresholds,
            "val_macro_f1": val_macro, "test": m}


def predicted_labels(probs: torch.Tensor, thresholds: list[float], classes: list[str]) -> list[list[str]]:
    """Per image, the names of the classes at or above their thresholds, most probable first."""
    out = []
    for row, keep in zip(probs, decide(probs, thresholds), strict=True):
        idx = [int(i) for i in torch.argsort(row, descending=True) if keep[int(i)]]
        out.append([classes[i] for i in idx])
    return out


def thresholds_of(meta: dict[str, Any]) -> list[float]:
    """A multi-label checkpoint's thresholds (0.5 each when it carries none)."""
    k = int(meta["dataset"]["num_classes"])
    t = (meta.get("thresholds") or {}).get("values")
    return [float(v) for v in t] if t and len(t) == k else [DEFAULT] * k


__all__ = ["choose_thresholds", "decide", "metrics", "parse_rule", "predicted_labels", "summarise", "thresholds_of"]
