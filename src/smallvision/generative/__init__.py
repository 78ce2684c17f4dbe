"""Generative models: GANs (fully connected, DCGAN), flow matching (a small U-Net) and
autoencoders (plain, convolutional, variational, denoising), each with its own small loop over the
same run folder, data, checkpoints and reports as the classifiers, and a quality score from a
smallvision classifier (score.py).

The notebook API is `train_generative` (and ``smallvision.train_gan`` / ``train_flow`` /
``train_autoencoder``): the same resolution as the ``gan|diffusion|autoencoder train`` commands."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def train_generative(kind: str, recipe: str | None = None, config: dict[str, Any] | None = None,
                     runs_dir: str | Path = "runs", resume: str | Path | None = None, command: str = "",
                     progress: Any = None, callbacks: Sequence[Any] = (), **overrides: Any) -> dict[str, Any]:
    """Train a `kind` model (gan, diffusion or autoencoder) and return its run's summary. Settings:
    the family's defaults < the model's registry defaults < `recipe` < `config` (a dict, e.g. a
    run's config.json) < `overrides`, validated once. `resume`: continue a stopped run folder with
    its own settings (a changed setting that alters the result is a one-line error).

        import smallvision
        smallvision.train_gan("gan-nolabel", epochs=1)
    """
    from smallvision.errors import UsageError
    from smallvision.generative.config import CONFIGS, gen_config
    from smallvision.generative.loop import saved_config

    if kind not in CONFIGS:
        raise UsageError(f"kind must be one of {', '.join(CONFIGS)}, got {kind!r}")
    if resume is not None:
        if config or recipe:
            raise UsageError("--resume continues a run with its own settings; drop --config and --recipe")
        saved = saved_config(resume)
        fields = CONFIGS[kind].__dataclass_fields__
        changed = [k for k, v in overrides.items() if k in fields and saved.get(k) != v and fields[k].metadata["result"]]
        if changed:
            raise UsageError(f"cannot resume with a changed {changed[0]!r}; it would change the result. Start a new run")
        recipe, config = saved.get("recipe") or None, {k: v for k, v in saved.items() if k != "recipe"}
    cfg = gen_config(kind, config, recipe, **overrides)
    if kind == "gan":
        from smallvision.generative.gan import train_gan as run
    elif kind == "diffusion":
        from smallvision.generative.diffusion import train_diffusion as run
    else:
        from smallvision.generative.autoencoder import train_autoencoder as run
    return run(cfg, runs_dir, command, resume, progress, callbacks)


def train_gan(recipe: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """`train_generative("gan", recipe, ...)`."""
    return train_generative("gan", recipe, **kwargs)


def train_flow(recipe: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """`train_generative("diffusion", recipe, ...)`: flow matching."""
    return train_generative("diffusion", recipe, **kwargs)


def train_autoencoder(recipe: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """`train_generative("autoencoder", recipe, ...)`."""
    return train_generative("autoencoder", recipe, **kwargs)
