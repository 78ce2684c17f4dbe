"""Named, versioned recipes: TOML files in this folder that pin data, model, optimiser,
schedule, batch size, epochs and seed. A classifier recipe's ``[train]`` table holds `TrainConfig`
fields; a generative recipe's ``[gan]``, ``[diffusion]`` or ``[autoencoder]`` table holds its
family's settings (generative/config.py). Comments say where each value comes from and why."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from smallvision.config import FIELDS, TrainConfig, merge, read_config_file
from smallvision.errors import UsageError
from smallvision.recipes.rules import AUTO_RECIPES, plan_photo_folder
from smallvision.registry import unknown_name_message


@cache
def _all() -> dict[str, dict[str, Any]]:
    out = {}
    for f in resources.files(__name__).iterdir():
        if f.name.endswith(".toml"):
            out[f.name[:-5]] = tomllib.loads(f.read_text(encoding="utf-8"))
    return out


def recipe_names() -> list[str]:
    return sorted(_all())


def recipe_doc(name: str) -> dict[str, Any]:
    try:
        return _all()[name]
    except KeyError:
        raise UsageError(unknown_name_message("recipe", name, recipe_names())) from None


KINDS = ("train", "gan", "diffusion", "autoencoder")  # a recipe's table: the command that trains it


def recipe_kind(name: str) -> str:
    """Which command trains the recipe: train (a classifier), gan, diffusion or autoencoder."""
    doc = recipe_doc(name)
    return next((k for k in KINDS if k in doc), "train")


def recipe_config(name: str, base: TrainConfig | None = None) -> TrainConfig:
    """`TrainConfig` defaults overridden by the recipe's ``[train]`` table."""
    doc = recipe_doc(name)
    if (kind := recipe_kind(name)) != "train":
        raise UsageError(f"recipe {name!r} trains a {kind} model: `smallvision {kind} train --recipe {name}`")
    cfg = merge(base or TrainConfig(), doc.get("train", {}), f"recipe {name}")
    cfg.recipe = name
    return cfg


PHOTO_KINDS = ("folder",)  # the data-set kinds whose default is a photo recipe (the one rule, `default_recipe`)


def default_recipe(dataset: str) -> str | None:
    """The recipe a run gets when it names none (no --recipe, --config or --model): for a folder
    of images (``folder:PATH``), our photo recipe, photo-transfer (fine-tuned ImageNet
    efficientnet-lite0) when its weights are on this machine (the offline package, torch's
    cache), photo-fast (from scratch) otherwise; for any other data set none (`TrainConfig`'s
    defaults, cnn-fast). Decided from the spec alone, no image opened: a folder of small images
    (digits, icons) names its model (``--model cnn-fast``) or recipe (``--recipe mnist-fast``).
    The run's first line and its report say which weights it started from."""
    from smallvision.config import DatasetSpec

    if not isinstance(dataset, str) or DatasetSpec.parse(dataset, strict=False).name not in PHOTO_KINDS:
        return None
    from smallvision.models.pretrained import weights_available

    return "photo-auto" if weights_available("efficientnet-lite0") else "photo-fast"


def portable_options(kind: str) -> tuple[str, ...]:
    """The data options a recipe's value of holds for any data set of this kind (the registry says)."""
    from smallvision.data import DATASETS

    return DATASETS.entry(kind).contract.portable if kind in DATASETS else ()


def resolve(recipe: str | None = None, config: str | Path | TrainConfig | None = None,
            **overrides: Any) -> TrainConfig:
    """The one way settings are resolved: defaults < recipe < config (a recipe TOML, a run's
    config.json or a `TrainConfig`) < overrides, validated once. With no recipe, config or model
    named, `default_recipe` may pick one from the data-set spec (a folder: the photo recipe). For
    photo-auto the rules of recipes/rules.py then read the folder (file list, a sample of headers)
    and time this machine, and set what the user did not."""
    if not recipe and config is None and "model" not in overrides:
        recipe = default_recipe(overrides.get("dataset", ""))
    base = recipe_config(recipe) if recipe else TrainConfig()
    explicit = set(overrides)  # what the data rules must not change: the user's own settings
    if isinstance(config, TrainConfig):
        base, explicit = config, set(FIELDS)
    elif config is not None:
        from_file = read_config_file(config)
        explicit |= set(from_file)
        base = merge(base, from_file, f"--config {config}", portable_options)
    cfg = backbone_size(merge(base, overrides, "settings", portable_options)).validate()
    if cfg.time and cfg.recipe not in AUTO_RECIPES:
        raise UsageError(f"--time plans the default photo recipe's schedule ({', '.join(AUTO_RECIPES)}); recipe "
                         f"{cfg.recipe or '(none)'} trains its own epochs: use --max-time to cap a run's time")
    if cfg.recipe in AUTO_RECIPES and cfg.spec.name == "folder" and not explicit >= {"epochs", "hflip", "tta"}:
        cfg = plan_photo_folder(cfg, explicit).validate()  # other data: the recipe's own settings
    return cfg


def backbone_size(cfg: TrainConfig) -> TrainConfig:
    """A folder of photos on ImageNet weights with no ``size`` given: the backbone's own input
    side (224 px for efficientnet-lite0 and torchvision's, 240 / 260 for lite1 / lite2), so
    ``--model efficientnet-lite2`` on a photo recipe sees the photos at the size its weights
    were trained at. Written into the settings (config.json shows it); no image is read."""
    from smallvision.config import DatasetSpec
    from smallvision.models.pretrained import BACKBONES

    spec = DatasetSpec.parse(cfg.dataset, strict=False) if isinstance(cfg.dataset, str) else None
    on_weights = str(cfg.model_args.get("pretrained", "")).lower() in ("true", "1", "yes") or "weights" in cfg.model_args
    if (spec is None or spec.name not in PHOTO_KINDS or "size" in cfg.data_args or "size" in spec.options
            or cfg.model not in BACKBONES or not on_weights):
        return cfg
    cfg.data_args = {**cfg.data_args, "size": BACKBONES[cfg.model].input_size}
    return cfg
