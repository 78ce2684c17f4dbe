"""Class imbalance: MNIST's training set with one class kept at 1 % of its images (seeded), the test
set untouched; mnist-fast plain, with --class-weights auto and with --sampler balanced; that
class's test recall and the overall accuracy, per seed.

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/imbalance.py --digit 3 --seeds 0,1,2 \
        --out benchmarks/results/imbalance.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, emit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--digit", type=int, default=3)
    ap.add_argument("--share", type=float, default=0.01)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--recipe", default="mnist-fast")
    ap.add_argument("--out")
    a = ap.parse_args()
    from smallvision import api
    from smallvision.data import load_dataset

    d = load_dataset("mnist")
    y = d.train_y.numpy()
    rng = np.random.default_rng(0)
    rare = np.flatnonzero(y == a.digit)
    keep = np.sort(np.concatenate([np.flatnonzero(y != a.digit), rng.choice(rare, int(a.share * len(rare)), replace=False)]))
    t = d.test_y.numpy()
    lines = [f"Class imbalance, {cpu_name()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; command: "
             f"benchmarks/imbalance.py --digit {a.digit} --share {a.share:g} --seeds {a.seeds} --recipe {a.recipe}", "",
             f"MNIST training set with digit {a.digit} kept at {a.share:.0%} ({int((y[keep] == a.digit).sum())} of "
             f"{len(rare)} images; {len(keep)} in all), the 10 000 test images untouched; {a.recipe}.", "",
             "| flags | test accuracy, median (each seed) | recall of the rare digit, median (each seed) |",
             "|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "imbalanced.npz"
        np.savez(path, x_train=d.train_x[keep, 0].numpy(), y_train=y[keep], x_test=d.test_x[:, 0].numpy(), y_test=t)
        variants = {"(none)": {}, "--class-weights auto": {"class_weights": "auto"},
                    "--sampler balanced": {"sampler": "balanced"}}
        for label, flags in variants.items():
            accs, recalls = [], []
            for seed in map(int, a.seeds.split(",")):
                r = api.train(a.recipe, dataset=f"npz:{path}", seed=seed, runs_dir=tmp, report=False, **flags)
                pred = r.test_logits.argmax(1).numpy()
                accs.append(r.summary["test_accuracy"])
                recalls.append(100 * float((pred[t == a.digit] == a.digit).mean()))
            lines.append(f"| {label} | {statistics.median(accs):.2f} % ({', '.join(f'{v:.2f}' for v in accs)}) "
                         f"| {statistics.median(recalls):.2f} % ({', '.join(f'{v:.2f}' for v in recalls)}) |")
            print(lines[-1], flush=True)
    emit(lines, a.out)


if __name__ == "__main__":
    main()
