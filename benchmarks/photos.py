"""Real photos: each photo recipe on each real photo set, several seeds, one table.

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/photos.py \
        --sets cats-vs-dogs-3000,hymenoptera --recipes "photo-transfer,photo-transfer-fast,photo-fast" \
        --seeds 0,1,2 --out FILE.md

(benchmarks/results/photos.md lists the exact commands of its tables.)

Each run is a fresh `smallvision train --recipe R --dataset folder:SET --seed S --json --no-report`
process, one after the other (nothing else running); "peak MB" is that process's peak
resident memory (its own ru_maxrss; the decoding worker processes not included) and the times are the run's own: "train s" is the
training loop, "features s" the frozen backbone's one pass over every photo (--cache-features),
"wall s" the whole command (start-up, decoding the photos, the final test). Accuracy is on the
set's held-out folder (cats-vs-dogs-3000: validation/, 1 000 photos; hymenoptera: val/, 153) or,
for flowers-128 (no split), the folder loader's fixed seeded share (1/7, 616 photos; with
`--extra "--data-arg holdout=0.2"` 20 %, 863 photos); model
selection only sees 10 % of the training photos. Rows: one per (set, recipe) with the median over
seeds and every seed's figure. "images/s" is the run's summary figure: training images per
second of step time, over both phases (a step on cached features runs only the head, so
photo-transfer-fast's figure is that of a linear layer, not of the backbone).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, emit
from _common import recipe_entries as entries  # noqa: E402

# the smallvision command, printing its own peak resident memory (KB) at exit
PEAK = ("import atexit, resource, sys; atexit.register(lambda: print('PEAK_KB', "
        "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)); "
        "from smallvision.cli.main import main; main(sys.argv[1:])")


def run(recipe: str | None, folder: Path, seed: int, extra: list[str],
        runs_dir: str = "/tmp/smallvision-bench-photos") -> dict:
    """One `smallvision train` process (no --recipe: the default); its summary, wall seconds and peak MB."""
    cmd = [sys.executable, "-c", PEAK, "train", *(["--recipe", recipe] if recipe else []), "--dataset",
           f"folder:{folder}", "--seed", str(seed), "--json", "--no-report", "--runs-dir", runs_dir, *extra]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    s = json.loads(p.stdout.strip().splitlines()[-1])
    s["peak_mb"] = int(p.stderr.rsplit("PEAK_KB ", 1)[1].split()[0]) / 1024
    s["wall"] = wall
    return s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="cats-vs-dogs-3000,hymenoptera,flowers-128")
    ap.add_argument("--recipes", default="photo-transfer,photo-transfer-fast",
                    help="comma-separated recipes, each optionally with its own flags: NAME[--flag value ...]")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--extra", default="", help="more train flags for every run, space-separated")
    ap.add_argument("--out")
    a = ap.parse_args()
    root = Path(os.environ.get("SMALLVISION_DATA", "../shared/data")) / "photos"
    lines = [f"Real photos, {cpu_name()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; "
             f"command: benchmarks/photos.py --sets {a.sets} --recipes {a.recipes} --seeds {a.seeds}"
             + (f" --extra '{a.extra}'" if a.extra else ""), "",
             "| set | recipe | held-out accuracy, median (each seed) | train s | features s | wall s | images/s | peak MB |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for name in a.sets.split(","):
        for recipe, own in entries(a.recipes):
            rows = [run(recipe, root / name, int(seed), a.extra.split() + own) for seed in a.seeds.split(",")]
            med = lambda k, rows=rows: statistics.median(r.get(k) or 0 for r in rows)  # noqa: E731
            each = ", ".join(f"{r['test_accuracy']:.1f}" for r in rows)
            label = recipe + (f" `{' '.join(own)}`" if own else "")
            lines.append(f"| {name} | {label} | **{med('test_accuracy'):.2f} %** ({each}) | {med('train_seconds'):.1f} "
                         f"| {med('feature_cache_seconds'):.1f} | {med('wall'):.1f} | {med('images_per_second'):.0f} "
                         f"| {max(r['peak_mb'] for r in rows):.0f} |")
            print(lines[-1], flush=True)
    emit(lines, a.out)


if __name__ == "__main__":
    main()
