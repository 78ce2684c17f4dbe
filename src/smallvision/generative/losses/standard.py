"""The four losses of the GAN literature's first years: BCE (non-saturating), least squares,
hinge, Wasserstein with gradient penalty."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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


@GAN_LOSSES.register("wgan-gp", "Wasserstein critic with gradient penalty (Gulrajani et al.; the penalty is added "
                     "by the loop, weight --gp-weight)", gradient_penalty=True)
def wgan_loss(d_real: torch.Tensor | None, d_fake: torch.Tensor, for_generator: bool) -> torch.Tensor:
    if for_generator:
        return -d_fake.mean()
    assert d_real is not None
    return d_fake.mean() - d_real.mean()


def gradient_penalty(d: nn.Module, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """E[(‖∇D(x̂)‖ - 1)²] on random interpolates x̂ of real and fake images."""
    a = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x = (a * real + (1 - a) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x, y).sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
