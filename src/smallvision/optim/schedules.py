"""Optimiser registry and learning-rate schedules.

A new optimiser or schedule is one file in ``smallvision/optim/`` with one ``@OPTIMIZERS.register``
or ``@SCHEDULERS.register`` (imported with the package, no other edit). Contracts: an optimiser's
``test_lr`` (a rate at which it learns the conformance fixture), a schedule's ``decays`` (its
last rate is below its peak) and ``warms_up``.

A schedule is a pure function of the step: ``lr_factor(cfg, step, steps_per_epoch)`` gives the
multiplier on ``cfg.lr``. Nothing to save but the step, so a resumed run gets the same rate
(the LR-reset-on-resume bug of other trainers cannot happen). Only `plateau` has state, a
small dict that travels in the checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from smallvision.config import TrainConfig
from smallvision.registry import Contract, Registry

OptimFn = Callable[[Iterable[torch.nn.Parameter], TrainConfig], torch.optim.Optimizer]


@dataclass(frozen=True)
class OptimizerContract(Contract):
    test_lr: float  # a rate at which it learns the conformance suite's stripes


@dataclass(frozen=True)
class ScheduleContract(Contract):
    decays: bool  # after its peak the rate only falls (far below it); False: the rate never changes
    warms_up: bool = False  # starts below its peak


OPTIMIZERS: Registry[OptimFn] = Registry("optimizer", contract=OptimizerContract)


@OPTIMIZERS.register("sgd", "SGD; --momentum, --nesterov, --weight-decay", test_lr=0.05)
def _sgd(params, cfg):  # type: ignore[no-untyped-def]
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                           weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adam", "Adam (L2 weight decay)", test_lr=3e-3)
def _adam(params, cfg):  # type: ignore[no-untyped-def]
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adamw", "AdamW (decoupled weight decay)", test_lr=3e-3)
def _adamw(params, cfg):  # type: ignore[no-untyped-def]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adadelta", "Adadelta (pytorch/examples MNIST uses lr 1.0)", test_lr=1.0)
def _adadelta(params, cfg):  # type: ignore[no-untyped-def]
    return torch.optim.Adadelta(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("rmsprop", "RMSprop; --momentum", test_lr=1e-3)
def _rmsprop(params, cfg):  # type: ignore[no-untyped-def]
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Parameter groups when the model has a backbone: the head at lr, the backbone at lr ×
    backbone_lr; with ``lr_groups`` N > 1 the backbone's parameters (in network order) are cut
    into N contiguous groups whose multipliers rise geometrically from backbone_lr (the stem) to
    backbone_lr^(1/N) (the last group), as fastai's ``slice(lo, hi)``."""
    feats, head = getattr(model, "features", None), getattr(model, "head", None)
    if feats is None or head is None:
        return OPTIMIZERS.get(cfg.optimizer)(model.parameters(), cfg)
    params = list(feats.parameters())
    n = max(1, min(cfg.lr_groups, len(params)))
    cuts = [round(i * len(params) / n) for i in range(n + 1)]
    groups = [{"params": params[cuts[i]:cuts[i + 1]], "lr_mult": cfg.backbone_lr ** ((n - i) / n)} for i in range(n)]
    groups.append({"params": list(head.parameters()), "lr_mult": 1.0})
    return OPTIMIZERS.get(cfg.optimizer)(groups, cfg)


# --------------------------------------------------------------------------- schedules
ScheduleFn = Callable[[TrainConfig, float, float], float]  # (cfg, epoch as float, total epochs) -> factor
SCHEDULERS: Registry[ScheduleFn] = Registry("scheduler", contract=ScheduleContract)


@SCHEDULERS.register("constant", "the same rate throughout", decays=False)
def _constant(cfg, e, total):  # type: ignore[no-untyped-def]
    return 1.0


@SCHEDULERS.register("step", "× gamma every step_size epochs (StepLR)", decays=True)
def _step(cfg, e, total):  # type: ignore[no-untyped-def]
    return cfg.gamma ** (int(e) // max(cfg.step_size, 1))


@SCHEDULERS.register("multistep", "× gamma at each epoch in milestones (MultiStepLR)", decays=True)
def _multistep(cfg, e, total):  # type: ignore[no-untyped-def]
    return cfg.gamma ** sum(int(e) >= m for m in cfg.milestones)


@SCHEDULERS.register("exponential", "× gamma every epoch (ExponentialLR)", decays=True)
def _exponential(cfg, e, total):  # type: ignore[no-untyped-def]
    return cfg.gamma ** int(e)


@SCHEDULERS.register("onecycle", "linear warm-up over pct_start of training, then linear decay to final_lr_ratio",
                    decays=True, warms_up=True)
def _onecycle(cfg, e, total):  # type: ignore[no-untyped-def]
    peak = cfg.pct_start * total
    if e < peak:
        return 0.04 + 0.96 * e / peak  # from lr/25, as torch's OneCycleLR
    return 1.0 - (1.0 - cfg.final_lr_ratio) * (e - peak) / max(total - peak, 1e-9)


@SCHEDULERS.register("cosine", "cosine decay to final_lr_ratio (with --warmup-epochs: linear warm-up first)",
                    decays=True)
def _cosine(cfg, e, total):  # type: ignore[no-untyped-def]
    w = cfg.warmup_epochs
    t = min(max((e - w) / max(total - w, 1e-9), 0.0), 1.0)
    return cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


@SCHEDULERS.register("hold-decay", "the rate held, then linear to 0 over the last share of the run: the GAN's "
                    "--lr-decay share (pix2pix, CycleGAN; budgeted training, Li et al. 2020); a classifier's: half",
                    decays=True)
def _hold_decay(cfg, e, total):  # type: ignore[no-untyped-def]
    share = getattr(cfg, "lr_decay", 0.5) or 1.0  # TrainConfig has no lr_decay: the second half
    return min(1.0, (1 - e / total) / share)


@SCHEDULERS.register("plateau", "× gamma when validation loss has not improved for plateau_patience epochs",
                    decays=False)  # its decay depends on validation, applied by PlateauState
def _plateau(cfg, e, total):  # type: ignore[no-untyped-def]
    return 1.0  # the decay itself lives in PlateauState, applied on top


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int, plateau_factor: float = 1.0) -> float:
    """Learning rate at global `step` (0-based). With --freeze --unfreeze-after U, each phase is
    its own cycle of the schedule (fastai's fine_tune: one fit_one_cycle frozen, one unfrozen):
    epochs [0, U) at --lr, then [U, epochs) restarted at --lr × --unfreeze-lr."""
    e, total, peak = step / steps_per_epoch, float(cfg.epochs), cfg.lr
    if two_phases(cfg):
        u = cfg.unfreeze_after
        if e < u:
            total = float(u)
        else:
            e, total, peak = e - u, total - u, cfg.lr * cfg.unfreeze_lr
    f = SCHEDULERS.get(cfg.scheduler)(cfg, e, total)
    if cfg.warmup_epochs > 0 and cfg.scheduler != "onecycle":
        f *= min(1.0, (e * steps_per_epoch + 1) / (cfg.warmup_epochs * steps_per_epoch))
    return peak * f * plateau_factor


def two_phases(cfg: TrainConfig) -> bool:
    """--freeze with --unfreeze-after U < epochs: the head alone, then everything."""
    return cfg.freeze and 0 < cfg.unfreeze_after < cfg.epochs


class PlateauState:
    """ReduceLROnPlateau's rule on validation loss, as plain data for checkpoints."""

    def __init__(self, patience: int, gamma: float) -> None:
        self.patience, self.gamma = patience, gamma
        self.best, self.bad, self.factor = math.inf, 0, 1.0

    def update(self, val_loss: float) -> None:
        if val_loss < self.best * (1 - 1e-4):
            self.best, self.bad = val_loss, 0
        else:
            self.bad += 1
            if self.bad > self.patience:
                self.factor *= self.gamma
                self.bad = 0

    def state_dict(self) -> dict[str, float]:
        return {"best": self.best, "bad": self.bad, "factor": self.factor}

    def load_state_dict(self, d: dict[str, float]) -> None:
        self.best, self.bad, self.factor = float(d["best"]), int(d["bad"]), float(d["factor"])
