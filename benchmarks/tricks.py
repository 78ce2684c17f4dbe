"""Training tricks, one ablation row each: a recipe as shipped, then with one trick added, over
seeds, with a validation split held out so each trick is judged on validation (the test figure is
reported beside it, never used to choose).

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/tricks.py --recipe fashion-fast --seeds 0,1,2 \
        --teacher-recipe fashion-accurate --out benchmarks/results/tricks-fashion.md

Rows: mixup, CutMix, both, weight EMA, random erasing, checkpoint averaging of the last 2 epochs, and knowledge distillation from a teacher
trained first with --teacher-recipe (seed 0, same validation split, so the teacher never saw the
student's validation images).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, emit  # noqa: E402

VARIANTS = {
    "as shipped": [],
    "--mixup 0.2": ["--mixup", "0.2"],
    "--cutmix 1.0": ["--cutmix", "1.0"],
    "--mixup 0.2 --cutmix 1.0": ["--mixup", "0.2", "--cutmix", "1.0"],
    "--ema 0.999": ["--ema", "0.999"],
    "--augment erase": ["--augment", "erase"],
    "--average-last 2": ["--average-last", "2"],
}


def train(recipe: str, flags: list[str], seed: int, tmp: str, name: str) -> dict:
    cmd = [sys.executable, "-m", "smallvision", "train", "--recipe", recipe, *flags, "--seed", str(seed),
           "--runs-dir", tmp, "--name", name, "--json", "--no-report", "--no-calibrate"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="fashion-fast")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--val-size", default="0.1")
    ap.add_argument("--teacher-recipe", default="")
    ap.add_argument("--only", default="", help="comma-separated variant labels (default: all)")
    ap.add_argument("--out")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    variants = dict(VARIANTS)
    if a.only:
        variants = {k: v for k, v in variants.items() if k in a.only.split(",")}
    lines = [f"Training tricks, {cpu_name()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; command: "
             f"benchmarks/tricks.py --recipe {a.recipe} --seeds {a.seeds} --val-size {a.val_size}"
             + (f" --only {a.only!r}" if a.only else "")
             + (f" --teacher-recipe {a.teacher_recipe}" if a.teacher_recipe else ""), "",
             f"{a.recipe} with --val-size {a.val_size} (the trick is judged on validation; test beside it). "
             "Medians over the seeds, each seed in brackets.", "",
             "| variant | val accuracy % | test accuracy % | train s |", "|---|---|---|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        if a.teacher_recipe:
            t = train(a.teacher_recipe, ["--val-size", a.val_size], 0, tmp, "teacher")
            lines.insert(4, f"Teacher: {a.teacher_recipe}, seed 0, same split: val {t['val_accuracy']:.2f} %, "
                            f"test {t['test_accuracy']:.2f} %, {t['train_seconds']:.0f} s.\n")
            variants[f"--teacher {a.teacher_recipe}"] = ["--teacher", t["run_dir"]]
        for label, flags in variants.items():
            runs = [train(a.recipe, ["--val-size", a.val_size, *flags], s, tmp, f"{abs(hash(label))}-{s}") for s in seeds]
            cols = []
            for key in ("val_accuracy", "test_accuracy"):
                vals = [r[key] for r in runs]
                cols.append(f"{statistics.median(vals):.2f} ({', '.join(f'{v:.2f}' for v in vals)})")
            lines.append(f"| {label} | {cols[0]} | {cols[1]} | {statistics.median(r['train_seconds'] for r in runs):.0f} |")
            print(lines[-1], flush=True)
    emit(lines, a.out)


if __name__ == "__main__":
    main()
