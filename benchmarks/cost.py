"""How training cost grows with the training-set size and the model width (issue: "how cost grows").

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/cost.py [--seeds 1]

Each row is `smallvision train --recipe mnist-fast FLAGS --json --no-report` in its own process
(one epoch, so time ∝ images × cost per image). `--train-limit` picks a seeded subset; widths scale
both convolution blocks (`--model-arg` changes only that option of the recipe's model). Prints a Markdown table. For where one step's time goes, see
`benchmarks/step_profile.py --profile`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

SIZES = [6000, 15000, 30000, 60000]  # 10, 25, 50, 100 % of MNIST's training set
# convolution widths of mnist-fast's two blocks; its 256-unit fully connected layer stays as shipped
WIDTHS = {"×0.5 (16-32)": "[16,32]", "×1 (32-64, shipped)": "[32,64]", "×2 (64-128)": "[64,128]",
          "×4 (128-256)": "[128,256]"}


def run(flags: list[str], seeds: int, runs: str) -> dict[str, float]:
    res = []
    for seed in range(seeds):
        out = subprocess.run([sys.executable, "-m", "smallvision", "train", "--recipe", "mnist-fast", *flags,
                              "--seed", str(seed), "--json", "--no-report", "--runs-dir", runs],
                             capture_output=True, text=True, check=True).stdout
        res.append(json.loads(out.strip().splitlines()[-1]))
    return {k: statistics.fmean(r[k] for r in res) for k in ("train_seconds", "test_accuracy", "images_per_second", "params")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as runs:
        print("| training images | train s | µs per image | test accuracy % |\n|---:|---:|---:|---:|")
        for n in SIZES:
            r = run(["--train-limit", str(n)], a.seeds, runs)
            print(f"| {n:,} ({100 * n // 60000} %) | {r['train_seconds']:.2f} | {1e6 * r['train_seconds'] / n:.0f} "
                  f"| {r['test_accuracy']:.2f} |", flush=True)
        print("\n| width | params | train s (60,000 images) | µs per image | test accuracy % |\n|---|---:|---:|---:|---:|")
        for label, widths in WIDTHS.items():
            r = run(["--model-arg", f"widths={widths}"], a.seeds, runs)
            print(f"| {label} | {r['params']:,.0f} | {r['train_seconds']:.2f} | {1e6 * r['train_seconds'] / 60000:.0f} "
                  f"| {r['test_accuracy']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
