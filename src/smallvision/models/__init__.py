"""Models: the registry, the classifier contract and every registered architecture.

A new model is one file in this folder with one ``@MODELS.register(name, description,
min_size=...)`` function returning a `Classifier`; it is imported (so registered) with no other
edit, and the conformance suite (tests/test_conformance.py) checks it against its contract:
``min_size`` (smallest input side it takes; default `base.DEFAULT_MIN_SIZE`, 4), ``heavy`` (slow on a CPU: smallest sizes only).
"""

from smallvision.models.base import MODELS, Classifier, count_params, create_model
from smallvision.registry import import_all

MODULES = import_all(__name__, __path__)  # registers every model, plugins included


__all__ = ["MODELS", "Classifier", "count_params", "create_model"]
