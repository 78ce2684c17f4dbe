"""smallvision: train, evaluate and compare small image classifiers with one command.

The library API (what the CLI calls) lives in `smallvision.api`; it is imported lazily so
that ``import smallvision`` and ``smallvision --help`` stay fast.
"""

from __future__ import annotations

from typing import Any

from smallvision._version import __version__

__all__ = ["__version__", "evaluate", "evaluate_ensemble", "train", "train_autoencoder", "train_ensemble", "train_flow",
           "train_gan", "train_generative"]


def __getattr__(name: str) -> Any:
    if name in ("train", "evaluate", "evaluate_ensemble", "train_ensemble"):
        from smallvision import api

        return getattr(api, name)
    if name in ("train_generative", "train_gan", "train_flow", "train_autoencoder"):
        from smallvision import generative

        return getattr(generative, name)
    raise AttributeError(name)
