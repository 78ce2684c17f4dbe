"""The GAN-loss registry and its contract (the package's docstring says what a loss is)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from smallvision.registry import Contract, Registry


@dataclass(frozen=True)
class GanLossContract(Contract):
    """A loss is loss(d_real, d_fake, for_generator) on the discriminator's scores; nothing else."""


GAN_LOSSES: Registry[Callable[..., torch.Tensor]] = Registry("GAN loss", contract=GanLossContract)
