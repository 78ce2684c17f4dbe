"""Settings that come from the data: named rules that read what a photo folder is and set the
schedule from it (the default recipe, ``photo-auto``). Each rule sets only what the user did not
give (a flag, a ``--config`` file or a recipe of their own always wins) and writes its reason
into ``reasons`` (config.json, the report's "Why these settings").

The plan, for a folder on ImageNet weights:
  1. the head is solved on the cached features (``--head exact``: a regularised logistic
     regression, its strength by 5-fold cross-validation on the training split) — seconds;
  2. the network's last stage(s) (``top_stages``) then train on cached activations for as many
     epochs as fit in the time budget at this machine's measured speed (`engine.budget`), a step
     budget fixed before training starts (and written into config.json, so ``--config`` repeats
     the run exactly on any machine);
  3. validation judges the two results only (``--select phases``): the fine-tuned model is kept
     unless the head alone is more accurate; no epoch is chosen among many on a small split.
Fine-tuning is skipped when a class has too few photos to validate it, or when the budget
does not hold one epoch; the head alone is then the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from smallvision.config import TrainConfig, parse_duration
from smallvision.engine.head import CLASS_MEANS_UP_TO

AUTO_RECIPES = ("photo-auto",)
BUDGET_BASE, BUDGET_PER_PHOTO = 50.0, 0.08  # --time auto: seconds, and seconds per photo of the training split
MIN_PER_CLASS = 10  # photos per class (training split) below which fine-tuning is not validated: the head alone
MAX_FINE_TUNE_EPOCHS = 20  # a fast machine (a GPU) stops here, not at the budget
OVERHEAD = 10.0  # seconds: start-up, the model's weights, the solve, calibration and the report
# the probe times bare network steps on 16 random images; in whole runs the feature pass took 1.35×
# (cats vs dogs) to 1.65× (flowers-128) its per-image time and the fine-tuning epochs 1.1-1.65×
# (batches of 64, the loader, evaluation, Python, other work on the machine)
SAFETY = 1.5


@dataclass(frozen=True)
class FolderFacts:
    """What the rules read from a folder: no image decoded beyond a sample of headers."""

    photos: int  # the training split (train/ or the seeded share), before the validation split
    test: int
    classes: list[str]
    per_class: list[int]
    channels: int
    native_side: int
    sample: tuple[Any, ...]  # a few photo paths (the speed probe decodes them)


def folder_facts(path: str, holdout: float | None = None) -> FolderFacts:
    from smallvision.data.folder import index_folder, probe_mode

    idx = index_folder(path, holdout)
    channels, side = probe_mode(idx.train)
    counts = [0] * len(idx.classes)
    for _, c in idx.train:
        counts[c] += 1
    step = max(1, len(idx.train) // 12)
    return FolderFacts(len(idx.train), len(idx.test), idx.classes, counts, channels, side,
                       tuple(p for p, _ in idx.train[::step][:12]))


def budget_seconds(cfg: TrainConfig, photos: int) -> tuple[float, str]:
    if cfg.time in ("", "auto"):
        b = BUDGET_BASE + BUDGET_PER_PHOTO * photos
        return b, f"--time auto: {BUDGET_BASE:g} s + {BUDGET_PER_PHOTO:g} s × {photos} training photos = {b:.0f} s"
    b = parse_duration(cfg.time)
    return b, f"--time {cfg.time} = {b:.0f} s"


def plan_photo_folder(cfg: TrainConfig, explicit: set[str]) -> TrainConfig:
    """`cfg` (photo-auto) with the data's rules applied to every setting not in `explicit`."""
    from pathlib import Path

    from smallvision.calibration import MIN_IMAGES as CALIBRATION_MIN
    from smallvision.engine.budget import measure_speed

    spec = cfg.spec
    if not spec.arg or not Path(spec.arg).expanduser().is_dir():  # not there (yet): loading the data says so
        return cfg
    from smallvision.data.folder import check_folder_options

    opts = {**spec.options, **cfg.data_args}
    holdout = float(opts["holdout"]) if opts.get("holdout") is not None else None
    check_folder_options(spec.arg, int(opts["size"]) if opts.get("size") else None, int(opts.get("workers", 2)),
                         str(opts.get("stream", "auto")), holdout)  # the loader's own checks, before any file is read
    facts = folder_facts(spec.arg or "", holdout)
    reasons: dict[str, str] = {}

    def put(key: str, value: Any, why: str) -> None:
        if key in explicit:
            reasons[key] = f"{getattr(cfg, key)!r}, as given (the rule would have said {value!r}: {why})"
            return
        setattr(cfg, key, value)
        reasons[key] = why

    lo = min(facts.per_class)
    small = facts.classes[facts.per_class.index(lo)]
    val = cfg.val_size if cfg.val_size >= 1 else round(facts.photos * cfg.val_size)
    fine_tune_photos = max(facts.photos - int(val), 1)
    budget, budget_why = budget_seconds(cfg, facts.photos)
    size = int(cfg.data_args.get("size") or 224)
    speed = measure_speed(cfg.model, size, facts.channels if facts.channels == 3 else 1, len(facts.classes),
                          cfg.precision, cfg.channels_last, cfg.device, facts.sample, cfg.top_stages)
    workers = max(1, int(cfg.data_args.get("workers", 2)))
    tta = 2 if cfg.tta else 1
    fixed = (OVERHEAD + (facts.photos + facts.test) * speed.decode / workers  # decode every photo once
             + facts.photos * speed.forward  # the feature pass over training + validation photos
             + (facts.test + val) * speed.forward * tta)  # the final test and the calibration, whole network
    fixed *= SAFETY
    per_epoch = fine_tune_photos * speed.train * SAFETY
    epochs = max(0, min(MAX_FINE_TUNE_EPOCHS, math.floor((budget - fixed) / per_epoch)))
    reasons["time"] = budget_why
    reasons["speed"] = f"measured: {speed.describe()}"
    n = cfg.top_stages
    what = ("of the last stage " if n == 1 else f"of the last {n} stages ") if n else ""
    cost = (f"the budget ({budget:.0f} s) less decoding, the feature pass and the test (~{fixed:.0f} s), "
            f"at ~{per_epoch:.0f} s per fine-tuning epoch {what}on {fine_tune_photos} photos")
    if lo < MIN_PER_CLASS:
        epochs, why = 0, (f"class {small!r} has {lo} training photo{'s' * (lo != 1)} (< {MIN_PER_CLASS}): too few to "
                          "validate fine-tuning, so the head alone")
    elif epochs == 0:
        why = f"no fine-tuning: {cost} holds no whole epoch"
    else:
        why = f"{epochs} fine-tuning epoch{'s' * (epochs != 1)} after the solved head: {cost}" + (
            f" (capped at {MAX_FINE_TUNE_EPOCHS})" if epochs == MAX_FINE_TUNE_EPOCHS else "")
    put("epochs", 1 + epochs, why)
    if cfg.epochs <= 1:  # the head alone: trained on each photo's features as it is (tested on it and its mirror)
        put("hflip", False, "the head alone trains on each photo's features as it is")
        if 0 < val < CALIBRATION_MIN:  # nothing left for validation to choose, and too few photos to calibrate
            head = ("the nearest class mean, nothing to choose" if lo <= CLASS_MEANS_UP_TO
                    else "its strength chosen by cross-validation")
            put("val_size", 0.0, f"the head alone ({head}): a validation split of {int(val)} photos would neither "
                f"choose nor calibrate (< {CALIBRATION_MIN}), so every photo trains; no validation, no calibration")
    cfg.reasons = reasons
    return cfg
