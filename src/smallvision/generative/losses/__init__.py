"""GAN losses: one registry, one file per family of losses (a new loss is one new file here,
picked up by the tests over the registry with no other edit).

Contract: ``loss(d_real, d_fake, for_generator) -> scalar``; ``d_*`` are the discriminator's raw
scores (B,), ``d_real`` is None on the generator's side. ``gradient_penalty=True`` in the
registration asks the loop to add `gradient_penalty` (weight ``--gp-weight``) to D's loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from smallvision.registry import Contract, Registry, import_all


@dataclass(frozen=True)
class GanLossContract(Contract):
    gradient_penalty: bool = False  # the loop adds `gradient_penalty` (weight --gp-weight) to D's loss


GAN_LOSSES: Registry[Callable[..., torch.Tensor]] = Registry("GAN loss", contract=GanLossContract)

from smallvision.generative.losses.standard import gradient_penalty  # noqa: E402 - after the registry it fills

MODULES = import_all(__name__, __path__)

__all__ = ["GAN_LOSSES", "gradient_penalty"]
