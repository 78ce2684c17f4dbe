"""Classification metrics from logits, with torchmetrics (no hand-written confusion maths)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ClassificationMetrics:
    accuracy: float  # percent
    loss: float
    n: int
    confusion: torch.Tensor  # (K, K) int64, rows = true class, columns = predicted
    precision: torch.Tensor  # (K,)
    recall: torch.Tensor
    f1: torch.Tensor
    support: torch.Tensor  # (K,) int64
    most_confused: list[tuple[int, int, int]]  # (true, predicted, count), largest first
    top_losses: list[tuple[int, float, int, int, float]]  # (index, loss, true, predicted, p(predicted))

    def per_class_rows(self, class_names: list[str]) -> list[dict]:
        return [{"class": class_names[i], "precision": round(float(self.precision[i]), 4),
                 "recall": round(float(self.recall[i]), 4), "f1": round(float(self.f1[i]), 4),
                 "support": int(self.support[i])} for i in range(len(class_names))]


def classification_metrics(logits: torch.Tensor, target: torch.Tensor, num_classes: int, top_k: int = 16,
                           confused_k: int = 10) -> ClassificationMetrics:
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_confusion_matrix,
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    logits, target = logits.float().cpu(), target.cpu()
    preds = logits.argmax(1)
    kw = {"num_classes": num_classes, "average": "none", "zero_division": 0}
    cm = multiclass_confusion_matrix(preds, target, num_classes)
    acc = float(multiclass_accuracy(preds, target, num_classes, average="micro")) * 100
    losses = F.cross_entropy(logits, target, reduction="none")
    probs = logits.softmax(1)
    off = cm.clone()
    off.fill_diagonal_(0)
    flat = off.flatten()
    order = flat.argsort(descending=True)[:confused_k]
    confused = [(int(i) // num_classes, int(i) % num_classes, int(flat[i])) for i in order if flat[i] > 0]
    top = losses.argsort(descending=True)[:top_k]
    top_losses = [(int(i), float(losses[i]), int(target[i]), int(preds[i]), float(probs[i, preds[i]])) for i in top]
    return ClassificationMetrics(
        accuracy=acc, loss=float(losses.mean()), n=len(target), confusion=cm,
        precision=multiclass_precision(preds, target, **kw), recall=multiclass_recall(preds, target, **kw),
        f1=multiclass_f1_score(preds, target, **kw), support=cm.sum(1), most_confused=confused,
        top_losses=top_losses,
    )
