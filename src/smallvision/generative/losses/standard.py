"""The GAN losses: BCE (non-saturating), least squares, hinge. (WGAN-GP, with its gradient
penalty and critic steps, was taken out in 0.2: docs/generative.md, "Tried, not kept".)"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from smallvision.generative.losses.base import GAN_LOSSES


@GAN_LOSSES.register("bce", "the original GAN objective; the generator's side non-saturating (maximise log D(G(z)))")
def bce_loss(d_real: torch.Tensor | None, d_fake: torch.Tensor, for_generator: bool) -> torch.Tensor:
    if for_generator:
        return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
    assert d_real is not None
    return (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
            + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))


@GAN_LOSSES.register("lsgan", "least squares (Mao et al.): real -> 1, fake -> 0")
def ls_loss(d_real: torch.Tensor | None, d_fake: torch.Tensor, for_generator: bool) -> torch.Tensor:
    if for_generator:
        return 0.5 * ((d_fake - 1) ** 2).mean()
    assert d_real is not None
    return 0.5 * (((d_real - 1) ** 2).mean() + (d_fake ** 2).mean())


@GAN_LOSSES.register("hinge", "hinge loss (SAGAN, BigGAN)")
def hinge_loss(d_real: torch.Tensor | None, d_fake: torch.Tensor, for_generator: bool) -> torch.Tensor:
    if for_generator:
        return -d_fake.mean()
    assert d_real is not None
    return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
