"""Calibration: expected calibration error before and after temperature scaling, on validation
and test, and what the held-out share costs in accuracy. One `smallvision train` process per
(recipe, seed), one after another; the figures are the run's own (summary.json's calibration).

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/calibration.py --seeds 0,1,2 \
        --runs "mnist-fast[--val-size 0.05]" "fashion-fast[--val-size 0.05]" \
        "photo-transfer-fast[--dataset folder:../shared/data/photos/cats-vs-dogs-3000]" \
        --out benchmarks/results/calibration.md

ECE: 15 equal-width confidence bins, the count-weighted mean |accuracy - confidence| (torchmetrics).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, emit, recipe_entries  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", nargs="+", required=True)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--out")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    lines = [f"Temperature scaling, {cpu_name()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; command: "
             f"benchmarks/calibration.py --seeds {a.seeds} --runs {' '.join(shlex.quote(r) for r in a.runs)}", "",
             "Medians over the seeds (each seed's test ECE before → after in brackets). T: the fitted temperature.", "",
             "| recipe | flags | val images | T | val ECE before → after | test ECE before → after | test MCE before → after "
             "| test NLL before → after | test accuracy |",
             "|---|---|---:|---:|---|---|---|---|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for run in a.runs:
            ((recipe, flags),) = recipe_entries(run)
            docs, accs = [], []
            for seed in seeds:
                name = f"{recipe}-{seed}"
                cmd = [sys.executable, "-m", "smallvision", "train", "--recipe", recipe, *flags, "--seed", str(seed),
                       "--runs-dir", tmp, "--name", name, "--json", "--no-report"]
                p = subprocess.run(cmd, capture_output=True, text=True)
                if p.returncode:
                    raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr[-2000:]}")
                s = json.loads(p.stdout.strip().splitlines()[-1])
                c = s.get("calibration") or {}
                if "temperature" not in c:
                    raise SystemExit(f"{run} seed {seed}: not calibrated ({c.get('skipped', 'no validation split')})")
                docs.append(c)
                accs.append(s["test_accuracy"])
                print(f"{run} seed {seed}: T {c['temperature']:.3f}, test ECE {100 * c['test_ece_before']:.2f} -> "
                      f"{100 * c['test_ece_after']:.2f} %", flush=True)

            def med(key: str, docs: list = docs) -> float:
                return statistics.median(d[key] for d in docs)

            each = ", ".join(f"{100 * d['test_ece_before']:.2f} → {100 * d['test_ece_after']:.2f}" for d in docs)
            lines.append(f"| {recipe} | `{' '.join(flags)}` | {docs[0]['val_images']} | {med('temperature'):.3f} "
                         f"| {100 * med('val_ece_before'):.2f} → {100 * med('val_ece_after'):.2f} % "
                         f"| {100 * med('test_ece_before'):.2f} → **{100 * med('test_ece_after'):.2f} %** ({each}) "
                         f"| {100 * med('test_mce_before'):.1f} → {100 * med('test_mce_after'):.1f} % "
                         f"| {med('test_nll_before'):.4f} → {med('test_nll_after'):.4f} "
                         f"| {statistics.median(accs):.2f} % |")
            print(lines[-1], flush=True)
    emit(lines, a.out)


if __name__ == "__main__":
    main()
