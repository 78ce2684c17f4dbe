"""Every export format of a trained model side by side (`smallvision benchmark`): file size, test
accuracy, batch-1 latency, batch throughput, measured in one process; the phones' files (TFLite,
ExecuTorch) in their own Python runtimes and the web page in headless Chromium. Each recipe is trained
first (its own schedule, no report), then benchmarked.

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/formats.py \
        --recipes "mnist-fast,fashion-fast,photo-transfer-fast[--dataset folder:../shared/data/photos/cats-vs-dogs-3000]" \
        --out benchmarks/results/formats.md

RECIPE[--flag value ...] adds training flags (benchmarks/_common.recipe_entries). Photo models are
timed on --photo-images test images (224-px efficientnet passes are ~1000× an MNIST one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import cpu_name, emit, recipe_entries  # benchmarks/_common.py

from smallvision.bench import FORMATS, OPTIONAL, benchmark, markdown


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="mnist-fast,fashion-fast")
    ap.add_argument("--photo-images", type=int, default=256)
    ap.add_argument("--formats", default=",".join(FORMATS + OPTIONAL), help="comma-separated (default: all)")
    ap.add_argument("--out")
    a = ap.parse_args()
    chosen = "" if a.formats == ",".join(FORMATS + OPTIONAL) else f" --formats {a.formats}"
    lines = [f"Command: `SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/formats.py --recipes \"{a.recipes}\"{chosen}` "
             f"({cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {time.strftime('%Y-%m-%d')})", ""]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (recipe, flags) in enumerate(recipe_entries(a.recipes)):
            cmd = [sys.executable, "-m", "smallvision", "train", "--recipe", recipe, *flags, "--runs-dir", tmp,
                   "--name", f"r{i}", "--json", "--no-report"]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode:
                raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr[-2000:]}")
            summary = json.loads(p.stdout.strip().splitlines()[-1])
            label = " ".join([recipe, *flags])
            photo = summary["dataset"].startswith("folder:")
            doc = benchmark(Path(summary["run_dir"]), formats=a.formats.split(","), images=a.photo_images if photo else 1024,
                            latency_calls=50 if photo else 200, log=lambda m: print(m, flush=True))
            lines += [f"## {label}", "", *markdown(doc), ""]
            print("\n".join(lines[-len(markdown(doc)) - 3:]), flush=True)
    emit(lines, a.out)


if __name__ == "__main__":
    main()
