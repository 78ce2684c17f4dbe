"""Settings of a generative run, one schema per family on the shared `RunSettings` (config.py):
`GanConfig` (``gan train``), `FlowConfig` (``diffusion train``) and `AutoencoderConfig`
(``autoencoder train``). Each command's flags, ``--config`` and config.json come from its own
class, so ``gan train --help`` lists only what a GAN reads.

Resolution, as the classifier's: the class's defaults < the model's registry defaults (the loss
and optimiser settings it was tuned with) < a recipe (``--recipe``: a TOML in ``recipes/`` with a
``[gan]``, ``[diffusion]`` or ``[autoencoder]`` table) < ``--config`` < flags, validated once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

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


def family_model(default: str, what: str) -> Any:
    """The ``--model`` setting of one family: its default model, and the family named in the help."""
    return redefault(RunSettings, "model", default, choices="generative model", help=f"A registered {what}.")


@dataclass
class GenerativeSettings(RunSettings):
    """What the three generative families share beyond `RunSettings`: Adam, the batch, the grids."""

    KIND: ClassVar[str] = ""

    model_args: dict[str, Any] = redefault(RunSettings, "model_args", {}, help="Model option KEY=VALUE (z_dim, width, "
                                           "latent, hidden, ...), repeatable.")
    lr: float = redefault(RunSettings, "lr", 2e-4, help="Adam learning rate.")
    beta1: float = setting(0.5, "Adam beta1 (DCGAN: 0.5).", check=UNIT)
    batch_size: int = redefault(RunSettings, "batch_size", 128)
    precision: str = redefault(RunSettings, "precision", "fast", choices=("fast", "fp32", "bf16"),
                               help="fast (bf16 autocast where the hardware runs it natively, else fp32), fp32, bf16.")
    samples: int = setting(64, "Images in each per-epoch grid.", check=AT_LEAST_1)
    gif: bool = setting(True, "Also write the per-epoch grids as an animated GIF.", result=False)
    recipe: str = setting("", "The recipe this came from, for the record.", flag=False, result=False)
    kind: str = setting("", "gan, autoencoder or diffusion (set by the command).", flag=False)

    def __post_init__(self) -> None:
        self.kind = self.KIND

    def validate(self) -> GenerativeSettings:
        validate_fields(self)
        if not isinstance(self.model_args, dict) or not isinstance(self.data_args, dict):
            raise UsageError("model_args and data_args are tables of KEY = VALUE")
        from smallvision.generative.nets import check_kind

        check_kind(self.model, self.KIND)
        return self


@dataclass
class GeneratorSettings(GenerativeSettings):
    """What the two families that draw from noise share (GAN, flow): conditioning, the weight
    average and the score."""

    conditional: bool = setting(False, "Condition on the class (sample one class on request).")
    clusters: int = setting(0, "Condition on K k-means clusters of the training images instead of their labels (no "
                            "label is read: a self-conditioned GAN, Liu et al. 2020, or a self-guided flow, Hu et al. "
                            "2023); samples draw the clusters in their training shares; 0: off.", check=NON_NEGATIVE)
    ema: float = setting(0.999, "Exponential moving average of the generator's weights per step (samples, grids, "
                         "score and the saved generator use it); 0: off.", check=UNIT)
    ema_rel: float = setting(0.0, "A power-function EMA (Karras et al. 2024) of relative width σ_rel instead of --ema's "
                             "fixed decay: the average spans about the last σ_rel share of the steps so far, however "
                             "short the run (e.g. 0.05); 0: --ema.", check=(lambda v: 0 <= v < 0.28, "must be in [0, 0.28)"))
    score: bool = setting(True, "Score the generator at the end with a smallvision classifier.", result=False)
    scorer: str = setting("", "Run folder or checkpoint of the scoring classifier (default: one trained on the data "
                          "set with its fast recipe, kept in <runs-dir>/_scorers).", result=False)
    score_every: float = setting(0.0, "At the end of an epoch at least this many seconds of training after the last "
                                 "point, score 1 000 samples: the report's quality-vs-time curve (scoring time is not "
                                 "training time); 0: off.", check=NON_NEGATIVE, result=False)
    score_samples: int = setting(5000, "Generated images scored.", check=AT_LEAST_1, result=False)

    def validate(self) -> GeneratorSettings:
        super().validate()
        if self.clusters and self.conditional:
            raise UsageError("--clusters conditions on clusters instead of the labels; drop --conditional (or --clusters)")
        if self.clusters == 1:
            raise UsageError("--clusters needs at least 2 clusters (0: off)")
        return self


@dataclass
class GanConfig(GeneratorSettings):
    KIND: ClassVar[str] = "gan"

    model: str = family_model("dcgan", "GAN")
    loss: str = setting("bce", "GAN loss (not given: the model's own, hinge for dcgan, bce for gan-mlp).",
                        choices="GAN loss")
    d_lr: float = setting(0.0, "The discriminator's own learning rate (two time-scale updates, Heusel et al.); "
                          "0: --lr.", check=NON_NEGATIVE)
    lr_decay: float = setting(0.0, "Both learning rates held, then falling linearly to 0 over this last share of "
                              "the run's step budget (--epochs), as pix2pix and budgeted training (Li et al. 2020); "
                              "a function of the step, so --max-time does not change it; 0: constant.",
                              check=(lambda v: 0 <= v <= 1, "must be in [0, 1]"))
    mode_seeking: float = setting(0.0, "Mode-seeking regulariser (Mao et al. 2019, MSGAN): the generator is also "
                                  "rewarded for drawing different images from different noise of the same class; its "
                                  "weight, 0: off.", check=NON_NEGATIVE)
    truncation: float = setting(0.0, "The truncation trick (Brock et al. 2019): noise entries beyond ±T drawn again, "
                                "trading variety for cleaner samples in the grids, the score and `gan sample`; 0: off.",
                                check=NON_NEGATIVE)

    def validate(self) -> GanConfig:
        super().validate()
        check_truncation(self.truncation)
        return self


@dataclass
class FlowConfig(GeneratorSettings):
    KIND: ClassVar[str] = "diffusion"

    model: str = family_model("unet", "flow model")
    steps: int = setting(16, "Solver steps from noise to image when sampling (Heun: 2 network evaluations per step "
                         "but the last).", check=AT_LEAST_1)
    sampler: str = setting("heun", "The ODE solver of sampling, euler or heun (2nd order).", choices=("euler", "heun"))
    guidance: float = setting(1.0, "With --conditional or --clusters: classifier-free guidance scale w, v = v(∅) + "
                              "w·(v(class) - v(∅)); 1: the conditional model as it is, 0: unconditional.",
                              check=NON_NEGATIVE)
    time_sampling: str = setting("uniform", "How training draws the time t of each image: uniform, or logit-normal "
                                 "(sigmoid of N(0, 1), Esser et al. 2024: more of the middle of the path).",
                                 choices=("uniform", "logit-normal"))
    cond_drop: float = setting(0.1, "With --conditional or --clusters: the share of training images shown without "
                               "their class (what guidance needs).", check=UNIT)

    def validate(self) -> FlowConfig:
        super().validate()
        if self.guidance != 1 and not (self.conditional or self.clusters):
            raise UsageError("--guidance mixes the class-conditional and unconditional velocities: it needs "
                             "--conditional or --clusters")
        return self


@dataclass
class AutoencoderConfig(GenerativeSettings):
    KIND: ClassVar[str] = "autoencoder"

    model: str = family_model("ae-conv", "autoencoder")
    kl_weight: float = setting(1.0, "VAE: weight of the KL term.", check=NON_NEGATIVE)
    denoise: float = setting(0.0, "Train to remove Gaussian noise of this std (0: off).", check=NON_NEGATIVE)


CONFIGS: dict[str, type[GenerativeSettings]] = {c.KIND: c for c in (GanConfig, FlowConfig, AutoencoderConfig)}
GenConfig = GanConfig | FlowConfig | AutoencoderConfig  # what a generative loop is given

# Settings that smallvision 0.1 had and 0.2 took out (their measurements lost; docs/generative.md,
# "Tried, not kept"), with the value that meant "off": a run made with them off still loads and resumes.
REMOVED = {"top_k": 1.0, "diff_augment": "", "ortho": 0.0, "retain": 1.0, "aux_weight": 0.0, "aux_on_fakes": True,
           "gp_weight": 10.0, "d_steps": 1}
REVIVE = "da0698c"  # the commit that still has them


def drop_removed(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """`doc` without the settings 0.2 removed, when they are off; one of them on is a one-line error
    naming the version (such a run cannot be repeated by this one)."""
    out = {}
    for key, value in doc.items():
        if key not in REMOVED:
            out[key] = value
        elif value != REMOVED[key] and not (key == "aux_on_fakes" and not doc.get("aux_weight")):
            raise UsageError(f"{source}: {key} = {value!r} was removed in smallvision 0.2 (its measurements lost; "
                             f"docs/generative.md, 'Tried, not kept'); git checkout {REVIVE} to run it")
    return out


def from_record(kind: str, doc: dict[str, Any], source: str) -> dict[str, Any]:
    """A run's recorded settings (config.json, a resume state) as this family's: smallvision 0.1
    recorded every family's fields in each run, so the other families' are dropped, and the
    removed ones (`drop_removed`)."""
    others = {f.name for c in CONFIGS.values() for f in dataclasses.fields(c)} - {f.name for f in dataclasses.fields(CONFIGS[kind])}
    return {k: v for k, v in drop_removed(doc, source).items() if k not in others}


def gen_config(kind: str, base: dict[str, Any] | None = None, recipe: str | None = None,
               **overrides: Any) -> GenConfig:
    """The class's defaults < the model's registry defaults < `recipe` < `base` (a file or a saved
    config) < overrides, validated once; unknown keys are one-line errors."""
    cls = CONFIGS[kind]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "kind"}
    layers = [(f"recipe {recipe}", recipe_settings(recipe, kind)) if recipe else ("", {}),
              ("settings", drop_removed(dict(base or {}), "settings")), ("settings", overrides)]
    given: dict[str, Any] = {}
    for source, layer in layers:
        layer = {k: v for k, v in layer.items() if k != "kind"}
        for key in layer:
            if key not in fields:
                raise unknown_setting(key, source if source != "settings" else f"{kind} train", fields)
        given.update(layer)
    if recipe:
        given["recipe"] = recipe
    model = given.get("model", fields["model"].default)
    from smallvision.generative.nets import GENERATIVE

    if model in GENERATIVE:  # a registry entry names the loss and optimiser settings it was tuned with
        contract = GENERATIVE.entry(model).contract
        for key, value in {**({"loss": contract.loss} if kind == "gan" else {}), **contract.defaults}.items():
            given.setdefault(key, value)
    return cls(**given).validate()


def to_toml(cfg: GenConfig, description: str = "") -> str:
    """A generative recipe file (`print-config --recipe NAME` writes it, `--config` reads it back)."""
    import tomli_w

    doc: dict[str, Any] = {"description": description} if description else {}
    doc[cfg.kind] = {k: v for k, v in cfg.to_dict().items() if v is not None and k not in ("kind", "recipe")}
    return tomli_w.dumps(doc)


def recipe_settings(name: str, kind: str) -> dict[str, Any]:
    """A generative recipe's table; naming one of another family is a one-line error."""
    from smallvision.recipes import recipe_doc, recipe_kind

    have = recipe_kind(name)
    if have != kind:
        article = "an" if have[0] in "aeiou" else "a"
        raise UsageError(f"recipe {name!r} is {article} {have} recipe: run it with `smallvision {have} train --recipe {name}`"
                         if have != "train" else f"recipe {name!r} trains a classifier: `smallvision train --recipe {name}`")
    return dict(recipe_doc(name)[kind])


def check_truncation(t: float) -> None:
    """A GAN truncation is 0 (off) or ≥ 0.05: below that the noise redraws would take thousands of tries."""
    if t < 0 or 0 < t < 0.05:
        raise UsageError(f"--truncation must be 0 (off) or at least 0.05, got {t:g}")
