"""GAN losses: one registry (base.py), one file per family of losses (a new loss is one new file
here, picked up by the tests over the registry with no other edit).

Contract: ``loss(d_real, d_fake, for_generator) -> scalar``; ``d_*`` are the discriminator's raw
scores (B,), ``d_real`` is None on the generator's side.
"""

from smallvision.generative.losses.base import GAN_LOSSES
from smallvision.registry import import_all

MODULES = import_all(__name__, __path__)

__all__ = ["GAN_LOSSES"]
