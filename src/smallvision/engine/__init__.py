"""Engine: the training loop, evaluation, checkpoints.

Importing a submodule (``smallvision.engine.evaluate``) loads only that module and what it
imports: the names below are resolved lazily, so reading a model file never imports the
trainer (tests/test_imports.py).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"load_checkpoint": "smallvision.modelfile", "load_model": "smallvision.modelfile",
         "save_checkpoint": "smallvision.modelfile", "EvalResult": "smallvision.engine.evaluate",
         "TrainResult": "smallvision.engine.trainer", "fit": "smallvision.engine.trainer"}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
