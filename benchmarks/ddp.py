"""Data-parallel throughput on this machine: the same run with 1 and with N processes (torchrun,
gloo on the CPU), and what the gradient all-reduce costs per step for our models, on paper.

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/ddp.py --recipe mnist-accurate --epochs 2 \
        --nprocs 1,2 --out benchmarks/results/ddp.md

Each row is one `smallvision train --recipe R --nproc N --json --no-report` process tree; images/s is
the engine's own figure (all processes' images over rank 0's time in training steps). With N
processes each runs with OMP_NUM_THREADS=1 (torchrun's default); the 1-process row uses every core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit  # noqa: E402


def run(recipe: str, epochs: int, nproc: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "smallvision", "train", "--recipe", recipe, "--epochs", str(epochs), "--json",
               "--no-report", "--runs-dir", tmp, "--nproc", str(nproc), *extra]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
        return json.loads(p.stdout.strip().splitlines()[-1])


def comm_rows(n_gpus: list[int]) -> list[str]:
    """Bytes each process sends and receives per optimiser step in a ring all-reduce of fp32 gradients."""
    from smallvision.data.info import DatasetInfo
    from smallvision.models import count_params, create_model
    from smallvision.recipes import recipe_config

    rows = []
    for recipe in ("mnist-fast", "fashion-accurate", "seed-cats-dogs-resnet18"):
        cfg = recipe_config(recipe)
        shape = (3, 224, 224) if "cats" in recipe else (1, 28, 28)
        args = {k: v for k, v in cfg.model_args.items() if k not in ("pretrained", "weights")}
        info = DatasetInfo("x", 10 if shape[0] == 1 else 2, *shape, (0.5,) * shape[0], (0.25,) * shape[0])
        p = count_params(create_model(cfg.model, info, **args))
        per = " | ".join(f"{2 * (n - 1) / n * p * 4 / 1e6:,.2f}" for n in n_gpus)
        rows.append(f"| {recipe} ({cfg.model}) | {p:,} | {p * 4 / 1e6:,.2f} | {per} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="mnist-accurate")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--nprocs", default="1,2")
    ap.add_argument("--extra", default="")
    ap.add_argument("--out")
    a = ap.parse_args()
    lines = [f"Command: `{' '.join(['python', 'benchmarks/ddp.py'] + sys.argv[1:])}`", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}", "",
             "| processes | train s | images/s | test accuracy % | steps |", "|---:|---:|---:|---:|---:|"]
    for n in (int(v) for v in a.nprocs.split(",")):
        s = run(a.recipe, a.epochs, n, a.extra.split())
        lines.append(f"| {n} | {s['train_seconds']:.2f} | {s['images_per_second']:,.0f} | {s['test_accuracy']:.2f} | {s['steps']} |")
        print(lines[-1], flush=True)
    gpus = [2, 4, 8]
    lines += ["", "Gradient all-reduce per optimiser step (fp32, ring: each process sends and receives 2(N-1)/N of the "
              "gradient):", "", "| recipe (model) | parameters | gradient MB | " + " | ".join(f"MB per process, N={n}" for n in gpus)
              + " |", "|---|---:|---:|" + "---:|" * len(gpus), *comm_rows(gpus)]
    emit(lines, a.out)


if __name__ == "__main__":
    main()
