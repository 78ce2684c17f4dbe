"""Run recipes to completion, one after another, and print a results table (docs/recipes.md).

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/recipes.py [RECIPE ...] [--out FILE.md]

Each recipe runs as `smallvision train --recipe NAME --json` in a subprocess (so its wall time
includes start-up and data loading), on whatever machine this is; the table records that
machine. Recipes reading seed 004's CSV files need mnist_train.csv / mnist_test.csv in the
working directory (`smallvision convert mnist --out DIR`, then `--cwd DIR`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

SEED_FIGURES = {
    "seed-mnist-cnn": "none reported (README: 98.4 % after epoch 1)",
    "seed-mnist-mlp-fullbatch": "train loss 0.106, test loss 0.159",
    "seed-mnist-mlp-plain": "comparison table (image lost)",
    "seed-mnist-mlp-relu": "comparison table (image lost)",
    "seed-mnist-mlp-batchnorm": "comparison table (image lost)",
    "seed-fashion-cnn": "90.18 %",
    "seed-mnist-mlp-sigmoid": '">99 %" (train accuracy)',
    "seed-mnist-mlp-sigmoid-bn": '">99 %" (train accuracy)',
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipes", nargs="*")
    ap.add_argument("--out", type=Path, help="also write the table here")
    ap.add_argument("--cwd", type=Path, default=Path.cwd(), help="working directory for the runs")
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/bench"))
    ap.add_argument("--extra", default="", help="extra flags for every run, e.g. '--max-time 600'")
    args = ap.parse_args()
    sv = [sys.executable, "-m", "smallvision"]
    names = args.recipes or json.loads(subprocess.run(
        [sys.executable, "-c", "import json; from smallvision.recipes import recipe_names; print(json.dumps(recipe_names()))"],
        capture_output=True, text=True, check=True).stdout)
    import torch

    rows = []
    for name in names:
        cmd = [*sv, "train", "--recipe", name, "--json", "--runs-dir", str(args.runs_dir.resolve()), *args.extra.split()]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=args.cwd)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            rows.append(f"| {name} | {SEED_FIGURES.get(name, '—')} | failed: {r.stderr.strip().splitlines()[-1]} | | | |")
            print(rows[-1], flush=True)
            continue
        s = json.loads(r.stdout.strip().splitlines()[-1])
        shown = " ".join(["smallvision", "train", "--recipe", name, *args.extra.split()])
        rows.append(f"| {name} | {SEED_FIGURES.get(name, '—')} | {s['test_accuracy']:.2f} % (loss {s['test_loss']:.3f}) | "
                    f"{s['train_seconds']:.1f} | {wall:.1f} | `{shown}` |")
        print(rows[-1], flush=True)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    head = (f"Machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"{time.strftime('%Y-%m-%d')}\n\n"
            "| recipe | seed's figure | our test accuracy | train s | wall s | command |\n|---|---|---|---:|---:|---|")
    table = head + "\n" + "\n".join(rows)
    print("\n" + table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
