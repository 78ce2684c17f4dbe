"""Typed training configuration: dataclass defaults < recipe file < command-line flags.

The resolved config is written to every run folder (``config.json``) and into every
checkpoint, so a run can be repeated and a checkpoint explains itself.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from smallvision.errors import UsageError


@dataclass
class TrainConfig:
    # --- data
    dataset: str = "mnist"
    data_dir: str | None = None
    val_size: float = 0.1  # < 1: fraction of the training set; ≥ 1: count; 0: no validation
    train_limit: int = 0  # use a seeded subset of this many training images (0: all)
    normalize: list[Any] | None = None  # [mean, std] on 0-1 pixels, numbers or per-channel lists; None: the data's own
    data_order: str = "seeded"  # seeded: a function of (seed, epoch); torch: replay DataLoader(shuffle=True)'s order
    shift: int = 0  # random translation augmentation, pixels
    hflip: bool = False  # random horizontal flips (not for digits)
    augment: str = "none"  # a preset of random crops/zooms/rotations/mirrors (data/augment.py)
    tta: bool = False  # test-time augmentation: average the logits over views (augment.tta_views: mirror, 1-px shifts)
    # --- model
    model: str = "cnn-fast"
    model_args: dict[str, Any] = field(default_factory=dict)
    freeze: bool = False  # transfer learning: train only the new head (backbone frozen, BN statistics kept)
    unfreeze_after: int = 0  # ... then train everything from this epoch on (0: stay frozen)
    cache_features: bool = False  # with --freeze: compute backbone features once, train the head on them
    backbone_lr: float = 1.0  # learning-rate multiplier for the backbone (features) when it trains
    # --- optimisation
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    batch_size: int = 64  # 0: the whole training set per step (full-batch gradient descent)
    epochs: int = 10  # full-batch mode: one epoch is one step
    # --- learning-rate schedule (a pure function of the step, see engine/schedule.py)
    scheduler: str = "constant"
    warmup_epochs: float = 0.0
    step_size: int = 7  # step: epochs between decays
    gamma: float = 0.1  # step/multistep/exponential/plateau: decay factor
    milestones: list[int] = field(default_factory=lambda: [30, 80])  # multistep: epochs
    pct_start: float = 0.25  # onecycle: fraction of steps spent warming up
    final_lr_ratio: float = 0.0  # onecycle/cosine: last lr as a fraction of lr
    plateau_patience: int = 2  # plateau: epochs without a better validation loss
    ema: float = 0.0  # exponential moving average of weights (decay per step, e.g. 0.999); 0: off
    # --- run control
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "auto"  # auto (bf16 on CUDA, else fp32) | fast (bf16 where native) | fp32 | bf16 | fp16
    channels_last: bool = False
    compile: bool = False  # torch.compile the model (weights are saved from the uncompiled one)
    threads: int = 0  # CPU threads for torch (0: torch's default)
    patience: int = 0  # early stopping: epochs without a better validation accuracy (0: off)
    target_accuracy: float = 0.0  # stop once validation accuracy (%) reaches this (0: off)
    max_time: float = 0.0  # stop after this many seconds of training (0: off)
    eval_every: int = 1  # validate every N epochs (full-batch recipes use more)
    test_every_epoch: bool = False  # also report test accuracy per epoch, as the seeds print it
    checkpoint_every: str = ""  # also save the resume state every N steps ("500") or seconds ("60s")
    tensorboard: bool = False  # also log metrics as TensorBoard event files (runs/<name>/tensorboard)
    report: bool = True  # write report.{html,md,json} and plots into the run folder
    name: str = ""  # run folder name (default: recipe or dataset-model plus a time stamp)
    recipe: str = ""  # the recipe this came from, for the record

    def validate(self) -> TrainConfig:
        checks = [
            (self.lr > 0, f"--lr must be > 0, got {self.lr:g}"),
            (self.batch_size >= 0, f"--batch-size must be ≥ 1 (or 0 for full batch), got {self.batch_size}"),
            (self.epochs >= 1, f"--epochs must be ≥ 1, got {self.epochs}"),
            (self.val_size >= 0, f"--val-size must be ≥ 0, got {self.val_size:g}"),
            (self.momentum >= 0, f"--momentum must be ≥ 0, got {self.momentum:g}"),
            (self.weight_decay >= 0, f"--weight-decay must be ≥ 0, got {self.weight_decay:g}"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing:g}"),
            (self.eval_every >= 1, f"--eval-every must be ≥ 1, got {self.eval_every}"),
            (self.backbone_lr > 0, f"--backbone-lr must be > 0, got {self.backbone_lr:g}"),
            (self.unfreeze_after >= 0, f"--unfreeze-after must be ≥ 0, got {self.unfreeze_after}"),
            (self.threads >= 0, f"--threads must be ≥ 0, got {self.threads}"),
            (self.shift >= 0, f"--shift must be ≥ 0, got {self.shift}"),
            (0 <= self.ema < 1, f"--ema must be in [0, 1), got {self.ema:g}"),
            (0 < self.gamma <= 1 or self.scheduler == "constant", f"--gamma must be in (0, 1], got {self.gamma:g}"),
            (self.max_time >= 0, f"--max-time must be ≥ 0, got {self.max_time:g}"),
            (0 <= self.target_accuracy <= 100, f"--target-accuracy is a percentage, got {self.target_accuracy:g}"),
            (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:"),
             f"--device must be auto, cpu, cuda or mps, got {self.device!r}"),
            (self.precision in ("auto", "fast", "fp32", "bf16", "fp16"),
             f"--precision must be auto, fast, fp32, bf16 or fp16, got {self.precision!r}"),
            (self.normalize is None or len(self.normalize) == 2, "normalize must be [mean, std]"),
            (self.data_order in ("seeded", "torch"), f"--data-order must be seeded or torch, got {self.data_order!r}"),
            (self.normalize is None or min(self.normalize[1] if isinstance(self.normalize[1], list)
                                           else [self.normalize[1]]) > 0, "normalize std must be > 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UsageError(msg)
        from smallvision.data.augment import AUGMENTATIONS

        AUGMENTATIONS.entry(self.augment)  # an unknown preset is answered with close matches
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def merge(base: TrainConfig, overrides: dict[str, Any], source: str) -> TrainConfig:
    """Return `base` with `overrides` applied; unknown keys are an error naming the source."""
    for key in overrides:
        if key not in FIELDS:
            close = difflib.get_close_matches(key, list(FIELDS), n=2)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UsageError(f"{source}: unknown setting {key!r}{hint}")
    return dataclasses.replace(base, **overrides)


def from_dict(d: dict[str, Any]) -> TrainConfig:
    return merge(TrainConfig(), {k: v for k, v in d.items() if k in FIELDS}, "config")
