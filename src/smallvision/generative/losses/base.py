"""The GAN-loss registry and its contract (the package's docstring says what a loss is)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from smallvision.registry import Contract, Registry


@dataclass(frozen=True)
class GanLossContract(Contract):
    gradient_penalty: bool = False  # the loop adds `gradient_penalty` (weight --gp-weight) to D's loss


GAN_LOSSES: Registry[Callable[..., torch.Tensor]] = Registry("GAN loss", contract=GanLossContract)
