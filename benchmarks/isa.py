"""Speed across CPU generations on one machine: oneDNN's ISA cap (ONEDNN_MAX_CPU_ISA) makes this CPU
run as an AVX2 laptop, an AVX-512 server without bf16, or itself; each recipe trains in fp32 and in
bf16 under each cap, and the table says whether `--precision fast` (bf16 only where native) picked
the faster one.

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/isa.py --out benchmarks/results/isa.md

Rows are short runs (speed, not accuracy; `--set test=false`): mnist-fast (1 epoch, as shipped),
fashion-fast --epochs 1 --train-limit 20000, photo-fast --epochs 2 on a 600-image folder assembled
by tests/fixtures/make_photo_folder.py. images/s is the engine's training figure. A cap above what the CPU
has is skipped.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
from _common import cpu_name, emit  # noqa: E402

from smallvision.engine.device import isa_allows_bf16  # noqa: E402

CAPS = ["AVX2", "AVX512_CORE", "AVX512_CORE_BF16", "AVX512_CORE_AMX"]
NEEDS = {"AVX2": "avx2", "AVX512_CORE": "avx512bw", "AVX512_CORE_BF16": "avx512_bf16", "AVX512_CORE_AMX": "amx_bf16"}


def run(recipe: str, extra: list[str], cap: str, precision: str, runs: str) -> dict:
    cmd = [sys.executable, "-m", "smallvision", "train", "--recipe", recipe, "--precision", precision, "--json",
           "--no-report", "--set", "test=false", "--runs-dir", runs, *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "ONEDNN_MAX_CPU_ISA": cap})
    if p.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--caps", default=",".join(CAPS))
    ap.add_argument("--out")
    a = ap.parse_args()
    flags = Path("/proc/cpuinfo").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        from make_photo_folder import make

        photos = make(Path(tmp) / "photos", per_class=300)
        recipes = [("mnist-fast", []), ("fashion-fast", ["--epochs", "1", "--train-limit", "20000"]),
                   ("photo-fast", ["--dataset", f"folder:{photos}", "--epochs", "2"])]
        lines = [f"Command: `SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/isa.py --caps {a.caps}` "
                 f"(2 cores, {cpu_name()}, {time.strftime('%Y-%m-%d')})", "",
                 "| ISA cap | recipe | fp32 images/s | bf16 images/s | bf16 / fp32 | `fast` picks | right? |",
                 "|---|---|---:|---:|---:|---|---|"]
        for cap in a.caps.split(","):
            if NEEDS.get(cap, "") not in flags:
                lines.append(f"| {cap} | (this CPU lacks {NEEDS.get(cap, cap)}: skipped) | | | | | |")
                continue
            for recipe, extra in recipes:
                fp32 = run(recipe, extra, cap, "fp32", tmp)["images_per_second"]
                bf16 = run(recipe, extra, cap, "bf16", tmp)["images_per_second"]
                native = ("amx_bf16" in flags or "avx512_bf16" in flags) and isa_allows_bf16(cap)
                pick = "bf16" if native else "fp32"
                right = (pick == "bf16") == (bf16 > fp32)
                lines.append(f"| {cap} | {recipe} | {fp32:,.0f} | {bf16:,.0f} | {bf16 / fp32:.2f} | {pick} | "
                             f"{'yes' if right else 'NO'} |")
                print(lines[-1], flush=True)
    emit(lines, a.out)


if __name__ == "__main__":
    main()
