"""Settings of a generative run: the same schema machinery as `TrainConfig` (config.py), so the
``gan train`` / ``autoencoder train`` flags, ``--config`` and config.json come from one place."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from smallvision.config import (
    AT_LEAST_1,
    NON_NEGATIVE,
    UNIT,
    RunSettings,
    redefault,
    setting,
    unknown_setting,
    validate_fields,
)
from smallvision.errors import UsageError


@dataclass
class GenConfig(RunSettings):
    """A generative run's settings: the shared ones (`RunSettings`) with this kind's defaults, then its own."""

    model: str = redefault(RunSettings, "model", "dcgan", choices="generative model",
                           help="gan-mlp, dcgan (gan train); ae-mlp, ae-conv, vae-mlp, vae-conv (autoencoder train); "
                           "unet (diffusion train).")
    model_args: dict[str, Any] = redefault(RunSettings, "model_args", {}, help="Model option KEY=VALUE (z_dim, width, "
                                           "latent, hidden, ...), repeatable.")
    conditional: bool = setting(False, "GAN, diffusion: condition on the class (sample one digit class on request).")
    clusters: int = setting(0, "GAN, diffusion: condition on K k-means clusters of the training images instead of their "
                            "labels (no label is read; a self-conditioned GAN, Liu et al. 2020, or a self-guided flow, "
                            "Hu et al. 2023, with clusters of pixels made once before training); samples draw the "
                            "clusters in their training shares; 0: off.",
                            check=NON_NEGATIVE)
    aux_weight: float = setting(0.0, "GAN: AC-GAN (Odena et al.): the discriminator also classifies real and generated "
                                "images and the generator is trained to draw the class it is given; the weight of that "
                                "classification loss (needs --conditional, or --clusters: then the class is the "
                                "cluster); 0: off.", check=NON_NEGATIVE)
    aux_on_fakes: bool = setting(True, "AC-GAN: the discriminator's class head also learns from generated images (as "
                                 "Odena et al.); off: from real images only, a plain classifier the generator must "
                                 "satisfy.")
    loss: str = setting("bce", "GAN loss (not given: the model's own, hinge for dcgan, bce for gan-mlp).",
                        choices="GAN loss")
    mode_seeking: float = setting(0.0, "GAN: mode-seeking regulariser (Mao et al. 2019, MSGAN): the generator is also "
                                  "rewarded for drawing different images from different noise of the same class (against a "
                                  "conditional generator ignoring its noise); its weight, 0: off.", check=NON_NEGATIVE)
    diff_augment: str = setting("", "GAN: DiffAugment (Zhao et al. 2020), the discriminator sees every image, real or "
                                "generated, randomly changed the same way: translation, cutout or translation,cutout; "
                                "'': off.", check=(lambda v: all(p in ("translation", "cutout") for p in v.split(",") if p),
                                                   "takes translation, cutout or translation,cutout"))
    top_k: float = setting(1.0, "GAN: top-k training (Sinha et al. 2020): the generator learns only from the share of "
                           "its batch the discriminator rates most real, falling linearly from all of it at the start "
                           "to this share at the end of the run (--epochs or --max-time, whichever ends it first); 1: off.",
                           check=(lambda v: 0 < v <= 1, "must be in (0, 1]"))
    lr_decay: float = setting(0.0, "GAN: both networks' learning rates fall linearly to zero over this last share of "
                              "the run (--epochs or --max-time, whichever ends it first), as budgeted training (Li et al. "
                              "2020) and pix2pix/CycleGAN do; 0: constant.",
                              check=(lambda v: 0 <= v <= 1, "must be in [0, 1]"))
    ortho: float = setting(0.0, "GAN: orthogonal regularisation of the generator (Brock et al. 2019, BigGAN's, made "
                           "scale-free, as BatchNorm makes each layer's scale arbitrary): the squared cosine similarity "
                           "of every two filters of each layer, summed, times this weight, is added to G's loss "
                           "(BigGAN: 1e-4); 0: off.", check=NON_NEGATIVE)
    retain: float = setting(1.0, "GAN, diffusion: instance selection (DeVries et al. 2020): train on this share of the "
                            "training images, the densest ones of each class or cluster (distance to the 5th nearest "
                            "neighbour in the pixels' first 64 principal components; without --clusters or "
                            "--conditional, of the whole set); 1: all.", check=(lambda v: 0 < v <= 1, "must be in (0, 1]"))
    gp_weight: float = setting(10.0, "wgan-gp: weight of the gradient penalty.", check=NON_NEGATIVE)
    d_steps: int = setting(1, "GAN: discriminator steps per generator step.", check=AT_LEAST_1)
    ema: float = redefault(RunSettings, "ema", 0.999, help="GAN, diffusion: exponential moving average of the "
                           "generator's weights per step (samples, grids, score and generator.safetensors use it); 0: off.")
    ema_rel: float = setting(0.0, "GAN, diffusion: a power-function EMA (Karras et al. 2024) of relative width σ_rel "
                             "instead of --ema's fixed decay: at every step the average spans about the last σ_rel "
                             "share of the steps so far, so the first weights drop out however short the run "
                             "(e.g. 0.05); 0: --ema.", check=(lambda v: 0 <= v < 0.28, "must be in [0, 0.28)"))
    lr: float = redefault(RunSettings, "lr", 2e-4, help="Adam learning rate (both networks).")
    beta1: float = setting(0.5, "Adam beta1 (DCGAN: 0.5).", check=UNIT)
    d_lr: float = setting(0.0, "GAN: the discriminator's own learning rate (two time-scale updates, Heusel et al.); "
                          "0: --lr.", check=NON_NEGATIVE)
    batch_size: int = redefault(RunSettings, "batch_size", 128)
    precision: str = redefault(RunSettings, "precision", "fast", choices=("fast", "fp32", "bf16"),
                               help="fast (bf16 autocast where the hardware runs it natively, else fp32), fp32, bf16.")
    steps: int = setting(16, "Diffusion: solver steps from noise to image when sampling (Heun: 2 network evaluations "
                         "per step but the last).", check=AT_LEAST_1)
    sampler: str = setting("heun", "Diffusion: the ODE solver of sampling, euler or heun (2nd order).",
                           choices=("euler", "heun"))
    guidance: float = setting(1.0, "Diffusion, conditional or --clusters: classifier-free guidance scale w, v = v(∅) + w·(v(class) - "
                              "v(∅)); 1: the conditional model as it is, 0: unconditional.", check=NON_NEGATIVE)
    truncation: float = setting(0.0, "GAN: the truncation trick (Brock et al. 2019, BigGAN): noise entries beyond ±T "
                                "are drawn again, trading variety for cleaner samples in the grids, the score and "
                                "`gan sample` (which can override it); 0: off.", check=NON_NEGATIVE)
    time_sampling: str = setting("uniform", "Diffusion: how training draws the time t of each image: uniform, or "
                                 "logit-normal (sigmoid of N(0, 1), Esser et al. 2024: more of the middle of the "
                                 "path, where the velocity is hardest to tell).", choices=("uniform", "logit-normal"))
    cond_drop: float = setting(0.1, "Diffusion, conditional or --clusters: the share of training images shown without their class "
                               "(what guidance needs).", check=UNIT)
    kl_weight: float = setting(1.0, "VAE: weight of the KL term.", check=NON_NEGATIVE)
    denoise: float = setting(0.0, "Autoencoder: train to remove Gaussian noise of this std (0: off).", check=NON_NEGATIVE)
    samples: int = setting(64, "Images in each fixed-noise grid.", check=AT_LEAST_1)
    gif: bool = setting(True, "Also write the per-epoch grids as an animated GIF.", result=False)
    score: bool = setting(True, "Score the generator at the end with a smallvision classifier (GAN).", result=False)
    scorer: str = setting("", "Run folder or checkpoint of the scoring classifier (default: one trained on the data "
                          "set with its fast recipe, kept in <runs-dir>/_scorers).", result=False)
    score_every: float = setting(0.0, "GAN, diffusion: at the end of an epoch at least this many seconds of training "
                                 "after the last point, score 1 000 samples (Inception Score, Fréchet distance, "
                                 "confident share): the report's quality-vs-time curve; scoring time is not counted "
                                 "as training; 0: off.", check=NON_NEGATIVE, result=False)
    score_samples: int = setting(5000, "Generated images scored.", check=AT_LEAST_1, result=False)
    kind: str = setting("gan", "gan, autoencoder or diffusion (set by the command).", flag=False)

    def validate(self) -> GenConfig:
        validate_fields(self)
        if not isinstance(self.model_args, dict) or not isinstance(self.data_args, dict):
            raise UsageError("model_args and data_args are tables of KEY = VALUE")
        if self.clusters and self.conditional:
            raise UsageError("--clusters conditions on clusters instead of the labels; drop --conditional (or --clusters)")
        check_truncation(self.truncation)
        if self.clusters == 1:
            raise UsageError("--clusters needs at least 2 clusters (0: off)")
        if self.aux_weight > 0 and not (self.conditional or self.clusters):
            raise UsageError("--aux-weight (AC-GAN) needs --conditional or --clusters: the generator must be told "
                             "the class (or cluster) to draw")
        if self.kind == "diffusion" and self.guidance != 1 and not (self.conditional or self.clusters):
            raise UsageError("--guidance mixes the class-conditional and unconditional velocities: it needs "
                             "--conditional or --clusters")
        return self


def gen_config(kind: str, base: dict[str, Any] | None = None, **overrides: Any) -> GenConfig:
    """Defaults < a saved or file config < overrides, validated; unknown keys are one-line errors."""
    fields = {f.name: f for f in dataclasses.fields(GenConfig)}
    given = {**(base or {}), **overrides, "kind": kind}
    for key in given:
        if key not in fields:
            raise unknown_setting(key, f"{kind} train", fields)
    if "model" not in given:
        given["model"] = DEFAULT_MODEL[kind]
    from smallvision.generative.nets import GENERATIVE

    if given["model"] in GENERATIVE:  # a registry entry names the loss and optimiser settings it was tuned with
        contract = GENERATIVE.entry(given["model"]).contract
        for key, value in {**({"loss": contract.loss} if kind == "gan" else {}), **contract.defaults}.items():
            given.setdefault(key, value)
    return GenConfig(**given).validate()


DEFAULT_MODEL = {"gan": "dcgan", "autoencoder": "ae-conv", "diffusion": "unet"}


def check_truncation(t: float) -> None:
    """A GAN truncation is 0 (off) or ≥ 0.05: below that the noise redraws would take thousands of tries."""
    if t < 0 or 0 < t < 0.05:
        raise UsageError(f"--truncation must be 0 (off) or at least 0.05, got {t:g}")
