"""What each choice in `mnist-fast` contributes: the recipe, then one change at a time.

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/ablation.py [--seeds 2]

Each row is `smallvision train --recipe mnist-fast FLAGS --json --no-report` in its own process,
mean over seeds; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

VARIANTS = [
    ("mnist-fast as shipped", []),
    ("fp32 instead of bf16 autocast", ["--precision", "fp32"]),
    ("no channels_last", ["--no-channels-last"]),
    ("full-resolution first block (stem conv) instead of 2×2 patches",
     ["--model-arg", 'stem="conv"', "--model-arg", "widths=[16,32,64]"]),
    ("3×3 conv (128) + global max-pool instead of the 256-unit layer",
     ["--model-arg", "widths=[32,64,128]", "--model-arg", "hidden=0"]),
    ("average pooling", ["--model-arg", 'downsample="avg"']),
    ("stride-2 convolutions instead of pooling", ["--model-arg", 'downsample="stride"']),
    ("batch 128, lr 0.1", ["--batch-size", "128", "--lr", "0.1"]),
    ("no label smoothing", ["--label-smoothing", "0"]),
    ("constant lr instead of one-cycle", ["--scheduler", "constant", "--lr", "0.05"]),
    ("Adam lr 3e-3 instead of Nesterov SGD", ["--optimizer", "adam", "--lr", "0.003", "--weight-decay", "0"]),
    ("2 epochs", ["--epochs", "2"]),
    ("2 epochs + random shifts (2 px)", ["--epochs", "2", "--shift", "2"]),
    ("version 2 of the recipe (16-32-64-128 full-resolution net, global max-pool, batch 128, lr 0.1)",
     ["--model-arg", 'stem="conv"', "--model-arg", "widths=[16,32,64,128]", "--model-arg", "hidden=0",
      "--batch-size", "128", "--lr", "0.1"]),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2)
    a = ap.parse_args()
    print("| variant | test accuracy % (mean of seeds) | train s (mean) | images/s |\n|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as runs:
        for label, flags in VARIANTS:
            res = []
            for seed in range(a.seeds):
                out = subprocess.run([sys.executable, "-m", "smallvision", "train", "--recipe", "mnist-fast", *flags,
                                      "--seed", str(seed), "--json", "--no-report", "--runs-dir", runs],
                                     capture_output=True, text=True, check=True).stdout
                res.append(json.loads(out.strip().splitlines()[-1]))
            acc = statistics.fmean(r["test_accuracy"] for r in res)
            sec = statistics.fmean(r["train_seconds"] for r in res)
            ips = statistics.fmean(r["images_per_second"] for r in res)
            print(f"| {label} | {acc:.2f} | {sec:.2f} | {ips:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
