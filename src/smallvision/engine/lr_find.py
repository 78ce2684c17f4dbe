"""Learning-rate range test (Smith 2015; fastai's ``lr_find``): raise the rate exponentially
for a few hundred steps, record the smoothed loss, stop when it explodes; suggest the rate of
steepest descent."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from smallvision.config import TrainConfig
from smallvision.runfolder import RunFolder


def range_test(cfg: TrainConfig, start_lr: float, end_lr: float, steps: int) -> tuple[list[float], list[float], str]:
    """(rates, smoothed losses, data-set name): the training step of `train`, on the data and model
    `train` would set up, at an exponentially rising rate, until the loss explodes."""
    from smallvision.engine.setup import build_model, prepare_data, runtime
    from smallvision.engine.trainer import train_step

    cfg.validate()
    rt = runtime(cfg)
    data = prepare_data(cfg, rt.device)
    model, opt, _ = build_model(cfg, data.info, rt.device)
    model.train()
    lrs, losses, smooth, best = [], [], 0.0, math.inf
    batches = (b for epoch in range(1, 10_000) for b in data.train.batches(epoch))
    for i in range(steps):
        lr = start_lr * (end_lr / start_lr) ** (i / (steps - 1))
        xb, yb = next(batches)
        loss, _ = train_step(model, opt, xb, yb, lr, cfg, rt.amp, rt.scaler)
        v = loss.item()
        smooth = 0.9 * smooth + 0.1 * v  # an EMA started at 0, so debias it
        debiased = smooth / (1 - 0.9 ** (i + 1))
        if not math.isfinite(debiased) or debiased > 4 * best:
            break
        best = min(best, debiased)
        lrs.append(lr)
        losses.append(debiased)
    return lrs, losses, data.info.name


def lr_find(cfg: TrainConfig, out: str | Path, start_lr: float = 1e-6, end_lr: float = 10.0,
            steps: int = 100) -> dict[str, Any]:
    from smallvision.report.plots import _plt, _save

    lrs, losses, data_name = range_test(cfg, start_lr, end_lr, steps)
    # steepest descent of the smoothed loss over log(lr), searched before the loss minimum (past
    # it the run is diverging) and past the noisy first tenth
    i_min = losses.index(min(losses))
    lo, hi = max(1, len(lrs) // 10), max(2, i_min)
    grads = [(losses[i + 1] - losses[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1])) for i in range(lo, hi)
             if i + 1 < len(lrs)]
    suggestion = lrs[lo + min(range(len(grads)), key=grads.__getitem__)] if grads else lrs[len(lrs) // 2]
    min_lr = lrs[losses.index(min(losses))]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(lrs, losses)
    ax.set_xscale("log")
    ax.axvline(suggestion, color="red", ls="--", label=f"steepest descent: {suggestion:.2g}")
    ax.axvline(min_lr / 10, color="green", ls=":", label=f"minimum / 10: {min_lr / 10:.2g}")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title(f"LR range test: {cfg.model} on {data_name}, {cfg.optimizer}, batch {cfg.batch_size}")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    _save(fig, out / RunFolder.LR_FIND_PNG)
    from smallvision.io import write_json

    res = {"suggested_lr": suggestion, "min_loss_lr": min_lr, "lrs": lrs, "losses": losses,
           "plot": str(out / RunFolder.LR_FIND_PNG)}
    write_json(out / RunFolder.LR_FIND_JSON, res)
    return res
