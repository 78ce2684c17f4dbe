"""Models: the registry, the classifier contract and every registered architecture."""

from smallvision.models import cnn, seeds, tv  # noqa: F401  (registers every model)
from smallvision.models.base import MODELS, Classifier, count_params, create_model

__all__ = ["MODELS", "Classifier", "count_params", "create_model"]
