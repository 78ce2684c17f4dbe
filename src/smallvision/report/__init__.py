"""Run reports: metrics from predictions (torchmetrics), plots (matplotlib, Agg) and the
report files (HTML with embedded images, Markdown, JSON). Imported lazily: plotting is heavy."""

from smallvision.report.build import write_report
from smallvision.report.metrics import ClassificationMetrics, classification_metrics

__all__ = ["ClassificationMetrics", "classification_metrics", "write_report"]
