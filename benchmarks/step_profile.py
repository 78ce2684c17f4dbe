"""Milliseconds per training step of `cnn-fast` variants on random MNIST-shaped batches, and an
optional op-level profile: where a CPU step's time goes (it showed BatchNorm, ReLU and max-pool
backward, memory-bound layers, costing more than the convolutions).

    .venv/bin/python benchmarks/step_profile.py [--widths 32,64] [--stem patch|conv] [--hidden 256]
        [--downsample max|avg|stride] [--batch 256] [--profile]

Defaults: the network of the shipped mnist-fast recipe (version 3) at its batch size.
"""

from __future__ import annotations

import argparse
import time

import torch

from smallvision.api import make_config
from smallvision.data.info import DatasetInfo
from smallvision.engine.device import autocast_for
from smallvision.engine.setup import build_model
from smallvision.engine.trainer import train_step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", default="32,64")
    ap.add_argument("--stem", default="patch")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--downsample", default="max")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--fp32", action="store_true")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    info = DatasetInfo("mnist", 10, 1, 28, 28, (0.1307,), (0.3081,))
    widths = [int(w) for w in a.widths.split(",")]
    # the recipe's own model, optimiser and training step (engine/setup.py, engine/trainer.py)
    cfg = make_config("mnist-fast", batch_size=a.batch, precision="fp32" if a.fp32 else "bf16", device="cpu",
                      model_args={"widths": widths, "downsample": a.downsample, "stem": a.stem, "hidden": a.hidden})
    m, opt, _ = build_model(cfg, info, torch.device("cpu"))
    amp, _ = autocast_for(torch.device("cpu"), cfg.precision)
    x = torch.randn(a.batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (a.batch,))

    def step() -> None:
        train_step(m, opt, x, y, cfg.lr, cfg, amp)

    for _ in range(20):
        step()
    t = time.perf_counter()
    for _ in range(100):
        step()
    dt = (time.perf_counter() - t) / 100
    print(f"widths {widths}, stem {a.stem}, hidden {a.hidden}, downsample {a.downsample}, batch {a.batch}, {'fp32' if a.fp32 else 'bf16'}: "
          f"{dt * 1000:.2f} ms/step, {a.batch / dt:,.0f} images/s")
    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(20):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
