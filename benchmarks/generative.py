"""GANs and autoencoders on real data, one `smallvision gan|autoencoder train` process per row, with
the quality score (GANs) or the test reconstruction error (autoencoders) in one table.

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/generative.py \
        --gan "dcgan --epochs 12" --gan "gan-mlp --epochs 30 --lr 3e-4" --ae "vae-conv --epochs 10" \
        --runs runs/bench-gen --out benchmarks/results/generative.md

Each spec is a model name followed by extra flags; `--read RUN` adds the row of a finished run
folder instead (its command is the one in its config.json, printed under the table). Time is the training loop's own clock
(`train_seconds`); the score uses 5 000 samples and the data set's default scorer (score.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit  # noqa: E402


def _conditioned(s: dict) -> str:
    """What a GAN's generator was told: the labels, k-means clusters (no labels), or nothing."""
    return "labels" if s["conditional"] else (f"{s['clusters']} clusters" if s.get("clusters") else "—")


def read(run_dir: str) -> tuple[str, dict]:
    """A finished run's kind and summary, with the command that made it."""
    folder = Path(run_dir)
    cfg = json.loads((folder / "config.json").read_text())
    out = json.loads((folder / "summary.json").read_text())
    out["command"] = cfg["command"]
    return cfg["kind"], out


def run(kind: str, spec: str, runs: str) -> dict:
    model, *extra = shlex.split(spec)
    cmd = [sys.executable, "-m", "smallvision", kind, "train", "--model", model, "--json", "--runs-dir", runs, *extra]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"failed: {shlex.join(cmd)}\n{p.stderr[-2000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["command"] = "smallvision " + shlex.join(cmd[3:])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gan", action="append", default=[])
    ap.add_argument("--ae", action="append", default=[])
    ap.add_argument("--runs", default="runs/bench-gen")
    ap.add_argument("--read", action="append", default=[])
    ap.add_argument("--out")
    a = ap.parse_args()
    lines = [f"Command: `{shlex.join(['python', 'benchmarks/generative.py'] + sys.argv[1:])}`", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores", ""]
    done = [read(r) for r in a.read]
    gans = [s for k, s in done if k == "gan"] + [run("gan", spec, a.runs) for spec in a.gan]
    aes = [s for k, s in done if k == "autoencoder"] + [run("autoencoder", spec, a.runs) for spec in a.ae]
    if gans:
        lines += ["| GAN | loss | conditioned on | epochs | train s | confident % | classes ≥ 5 % | smallest class % | entropy | "
                  "Fréchet | run |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in gans:
        sc = s["score"]
        lines.append(f"| {s['model']} | {s['loss']} | {_conditioned(s)} | {s['epochs_run']} | "
                     f"{s['train_seconds']:.0f} | {sc['confident_pct']:.1f} | {sc['classes_with_5pct']} | "
                     f"{sc['min_class_pct']:.1f} | {sc['class_entropy']:.3f} | {sc['frechet_distance']:.2f} | {s['run']} |")
        real = sc["real_test_images"]
        print(lines[-1], flush=True)
    if gans:
        lines += ["", f"Real test images, same scorer: confident {real['confident_pct']:.1f} %, classes ≥ 5 %: "
                  f"{real['classes_with_5pct']}, smallest {real['min_class_pct']:.1f} %, entropy {real['class_entropy']:.3f}, "
                  f"Fréchet (half the test set against the other half) {real['frechet_distance']:.2f}.", ""]
    if aes:
        lines += ["| autoencoder | latent | denoise | epochs | train s | test MSE per pixel | run |", "|---|---:|---:|---:|---:|---:|---|"]
    for s in aes:
        lines.append(f"| {s['model']} | {s['latent']} | {s['denoise']} | {s['epochs_run']} | {s['train_seconds']:.0f} | "
                     f"{s['test_mse_per_pixel']:.5f} | {s['run']} |")
        print(lines[-1], flush=True)
    lines += ["", "Commands:", ""] + [f"- {s['run']}: `{s['command']}`" for s in gans + aes]
    emit(lines, a.out)


if __name__ == "__main__":
    main()
