"""Label-issue finder against injected noise: a seeded 6 000-image MNIST training subset with a
share of its labels flipped (each to a random other class); `smallvision labels`' finder (5 folds,
confident learning) is scored on the flipped indices. Also times `smallvision labels` on a full
test set.

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/label_noise.py --seeds 0,1,2 \
        --recipes mnist-accurate,mnist-fast --out benchmarks/results/label-noise.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, emit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--recipes", default="mnist-accurate")
    ap.add_argument("--images", type=int, default=6000)
    ap.add_argument("--noise", type=float, default=0.03)
    ap.add_argument("--out")
    a = ap.parse_args()
    from smallvision.clean import label_issues
    from smallvision.data import load_dataset

    d = load_dataset("mnist")
    lines = [f"Injected label noise, {cpu_name()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; command: "
             f"benchmarks/label_noise.py --seeds {a.seeds} --recipes {a.recipes} --images {a.images} --noise {a.noise:g}",
             "", f"A seeded {a.images}-image MNIST training subset, {a.noise:.0%} of its labels flipped; 5 folds, each "
             "holding 10 % out for its temperature.", "",
             "| recipe (epochs raised for small folds) | seed | flipped | suspects | precision | recall | out-of-fold acc. | s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in a.recipes.split(","):
            for seed in map(int, a.seeds.split(",")):
                rng = np.random.default_rng(seed)
                idx = rng.permutation(len(d.train_y))[: a.images]
                x, y = d.train_x[idx, 0].numpy(), d.train_y[idx].numpy().copy()
                n_flip = round(a.noise * a.images)
                flip = rng.choice(a.images, n_flip, replace=False)
                y[flip] = (y[flip] + rng.integers(1, 10, n_flip)) % 10
                path = Path(tmp) / f"noisy-{seed}.npz"
                np.savez(path, x_train=x, y_train=y, x_test=d.test_x[:500, 0].numpy(), y_test=d.test_y[:500].numpy())
                t0 = time.perf_counter()
                r = label_issues(f"npz:{path}", "train", recipe=recipe, runs_dir=Path(tmp) / "runs")
                secs = time.perf_counter() - t0
                found = {s["index"] for s in r["suspects"]}
                hit = len(found & set(flip.tolist()))
                lines.append(f"| {recipe} | {seed} | {n_flip} | {len(found)} | {hit / max(len(found), 1):.3f} "
                             f"| {hit / n_flip:.3f} | {r['oof_accuracy']:.2f} % | {secs:.0f} |")
                print(lines[-1], flush=True)
    emit(lines, a.out)


if __name__ == "__main__":
    main()
