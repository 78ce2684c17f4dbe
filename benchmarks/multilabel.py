"""Multi-label: a recipe over seeds, every multi-label figure of its test split (macro/micro-F1,
mAP, exact match) and the chosen thresholds, medians and each seed.

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/multilabel.py --recipe multi-mnist-fast \
        --seeds 0,1,2 --out benchmarks/results/multilabel.md
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

KEYS = (("test_macro_f1", "macro-F1"), ("test_micro_f1", "micro-F1"), ("test_map", "mAP"),
        ("test_accuracy", "exact match %"), ("train_seconds", "train s"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="multi-mnist-fast")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.seeds.split(","):
            cmd = [sys.executable, "-m", "smallvision", "train", "--recipe", a.recipe, "--seed", seed, "--runs-dir", tmp,
                   "--name", f"s{seed}", "--json", "--no-report"]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode:
                raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr[-2000:]}")
            s = json.loads(p.stdout.strip().splitlines()[-1])
            s["values"] = json.loads((Path(s["run_dir"]) / "thresholds.json").read_text())["values"]
            rows.append(s)
            print(json.dumps({k: s[k] for k, _ in KEYS}), flush=True)
    lines = [f"Multi-label, {cpu_name()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; command: "
             f"benchmarks/multilabel.py --recipe {a.recipe} --seeds {a.seeds}", "",
             f"{rows[0]['dataset']} ({rows[0]['data_source']}); the test split's figures at the thresholds chosen "
             f"on the validation split ({rows[0]['thresholds']}).", "",
             "| figure | median | each seed |", "|---|---:|---|"]
    for key, label in KEYS:
        vals = [r[key] for r in rows]
        lines.append(f"| {label} | {statistics.median(vals):.4g} | {', '.join(f'{v:.4g}' for v in vals)} |")
    lines.append(f"| threshold | | {', '.join(str(sorted(set(r['values']))) for r in rows)} |")
    emit(lines, a.out)


if __name__ == "__main__":
    main()
