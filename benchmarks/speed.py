"""Time-to-accuracy benchmark: recipes over several seeds, side by side with a faithful
pytorch/examples MNIST baseline, on this machine, in one invocation.

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/speed.py \
        --recipes mnist-fast,fashion-fast --seeds 5 --baseline --out benchmarks/results/speed.md

Every run is its own process (`smallvision train --recipe R --seed S --json --no-report`);
train seconds are the engine's own clock (the training loop, validation included, data loading
and the final test excluded); peak memory is the process's maximum resident set (wait4).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(cmd: list[str]) -> tuple[list[str], float]:
    """Run a command; return its stdout lines and peak RSS in MB."""
    with tempfile.TemporaryFile("w+") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        lines = out.read().strip().splitlines()
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}")
    return lines, usage.ru_maxrss / 1024


def machine() -> str:
    import torch

    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), cpu)
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default="mnist-fast")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--baseline", action="store_true", help="also time pytorch/examples' MNIST recipe to --target")
    ap.add_argument("--target", type=float, default=99.0)
    ap.add_argument("--extra", default="", help="extra flags for every recipe run")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    rows, ours = [], {}
    with tempfile.TemporaryDirectory() as runs:
        for recipe in [r for r in a.recipes.split(",") if r]:
            res = []
            for seed in range(a.seeds):
                lines, mb = run([sys.executable, "-m", "smallvision", "train", "--recipe", recipe, "--seed", str(seed),
                                 "--json", "--no-report", "--runs-dir", runs, *a.extra.split()])
                s = json.loads(lines[-1])
                res.append((s["train_seconds"], s["test_accuracy"], s["images_per_second"], mb))
                print(f"{recipe} seed {seed}: {s['test_accuracy']:.2f} % in {s['train_seconds']:.2f} s", file=sys.stderr)
            secs, accs = [r[0] for r in res], [r[1] for r in res]
            ours[recipe] = (statistics.median(secs), statistics.fmean(accs))
            rows.append(f"| {recipe} {a.extra} | {len(res)} | {statistics.median(secs):.2f} ({min(secs):.2f}–{max(secs):.2f}) | "
                        f"{statistics.fmean(accs):.2f} ± {statistics.stdev(accs) if len(accs) > 1 else 0:.2f} | "
                        f"{min(accs):.2f} | {statistics.median(r[2] for r in res):,.0f} | {max(r[3] for r in res):,.0f} |")
    base_line = ""
    if a.baseline:
        data = Path(os.environ.get("SMALLVISION_DATA", "../shared/data").split(os.pathsep)[0]) / "mnist"
        lines, mb = run([sys.executable, str(HERE / "baseline_pytorch_examples.py"), "--data", str(data),
                         "--target", str(a.target)])
        b = json.loads(lines[-1])
        t = b["seconds_to_target"]
        rows.append(f"| pytorch/examples MNIST (Adadelta, batch 64, DataLoader) | 1 | "
                    f"{b['train_seconds']:.2f} ({b['epochs']} epochs) | {b['test_accuracy']:.2f} | {b['test_accuracy']:.2f} | "
                    f"— | {mb:,.0f} |")
        if t and "mnist-fast" in ours:
            med, acc = ours["mnist-fast"]
            base_line = (f"\nTime to {a.target:g} % test accuracy: pytorch/examples {t:.1f} s; mnist-fast {med:.2f} s "
                         f"(median, mean accuracy {acc:.2f} %): **{t / med:.0f}× faster**.\n")
    table = (f"Machine: {machine()}\n\n| recipe | runs | train s, median (min–max) | test accuracy % (mean ± std) | "
             "min | images/s | peak MB |\n|---|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n" + base_line)
    print(table)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(f"Command: `SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/speed.py "
                         f"{' '.join(sys.argv[1:])}`\n\n{table}")


if __name__ == "__main__":
    main()
