"""The generative recipes on real data, one `smallvision gan|diffusion|autoencoder train --recipe NAME`
process per row, with the quality score (GANs, flows) or the test reconstruction error
(autoencoders) in one table.

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/generative.py \
        --recipe gan-nolabel --recipe flow-selfguided ... --runs runs/bench-gen \
        --out benchmarks/results/generative-recipes.md

`--read RUN` adds the row of a finished run folder instead (its command, from its config.json, is
printed under the table). Time is the training loop's own clock (`train_seconds`); the score is the
run's own: its `--score-samples` (5 000) samples of noise seed 0 and the data set's default scorer
(score.py), the floor n real training images against the same test set.
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
    """What a generator was told: the labels (and the guidance), k-means clusters (no labels), or nothing."""
    if s["conditional"]:
        return "labels" + (f", guidance {s['guidance']:g}" if s.get("guidance", 1) != 1 else "")
    if s.get("clusters"):
        return f"{s['clusters']} clusters" + (f", guidance {s['guidance']:g}" if s.get("guidance", 1) != 1 else "")
    return "—"


def _what(kind: str, s: dict) -> str:
    if kind == "diffusion":
        t = "logit-normal t" if s.get("time_sampling") == "logit-normal" else "uniform t"
        return f"{s['model']} flow, {t}, {s['steps']} {s['sampler']} steps ({s['evaluations_per_sample']} calls)"
    return f"{s['model']} GAN, {s['loss']}" + (f", truncation {s['truncation']:g}" if s.get("truncation") else "")


def _ratio(sc: dict, floor: dict) -> str:
    """The Fréchet distance as a multiple of its floor (the issue's target is ≤ 3×)."""
    a, b = sc.get("frechet_distance"), floor.get("frechet_distance")
    return f"{a / b:.2f}×" if a is not None and b else "—"


def _f(sc: dict, key: str, fmt: str) -> str:
    return fmt.format(sc[key] * (1000 if key == "kid" else 1)) if key in sc else "—"


def read(run_dir: str) -> tuple[str, dict]:
    """A finished run's kind and summary, with the command that made it."""
    folder = Path(run_dir)
    cfg = json.loads((folder / "config.json").read_text())
    out = json.loads((folder / "summary.json").read_text())
    out["command"] = cfg["command"]
    out.setdefault("time_sampling", cfg.get("time_sampling", "uniform"))  # runs from before the summary said
    return cfg["kind"], out


def run(recipe: str, runs: str) -> tuple[str, dict]:
    """Train `recipe` by its name alone; its kind and summary, with the command."""
    from smallvision.recipes import recipe_kind

    kind = recipe_kind(recipe)
    cmd = [sys.executable, "-m", "smallvision", kind, "train", "--recipe", recipe, "--json", "--runs-dir", runs]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"failed: {shlex.join(cmd)}\n{p.stderr[-2000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["command"] = "smallvision " + shlex.join(cmd[3:])
    return kind, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", action="append", default=[], help="a generative recipe to train (repeatable)")
    ap.add_argument("--read", action="append", default=[], help="a finished run folder to tabulate (repeatable)")
    ap.add_argument("--runs", default="runs/bench-gen")
    ap.add_argument("--out")
    a = ap.parse_args()
    lines = [f"Command: `{shlex.join(['python', 'benchmarks/generative.py'] + sys.argv[1:])}`", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores", ""]
    done = [read(r) for r in a.read] + [run(r, a.runs) for r in a.recipe]
    gens = [(k, s) for k, s in done if k in ("gan", "diffusion")]
    aes = [s for k, s in done if k == "autoencoder"]
    if gens:
        lines += ["| generator | data | seed | conditioned on | epochs | train s | IS (real) | FID (floor) | FID ÷ floor | KID ×1000 (floor) "
                  "| near copies % | confident % (real) | asked class % | smallest class % | run |",
                  "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for kind, s in gens:
        sc = s["score"]
        real, floor = sc["real_test_images"], sc.get("floor", {})
        lines.append(f"| {_what(kind, s)} | {s['dataset']} | {s.get('seed', '')} | {_conditioned(s)} | {s['epochs_run']} | "
                     f"{s['train_seconds']:.0f} | {_f(sc, 'inception_score', '{:.2f}')} ({_f(real, 'inception_score', '{:.2f}')}) | "
                     f"{_f(sc, 'frechet_distance', '{:.3f}')} ({_f(floor, 'frechet_distance', '{:.3f}')}) | {_ratio(sc, floor)} | "
                     f"{_f(sc, 'kid', '{:.2f}')} ({_f(floor, 'kid', '{:.2f}')}) | {_f(sc, 'memorised_pct', '{:.1f}')} | "
                     f"{sc['confident_pct']:.1f} ({real['confident_pct']:.1f}) | {_f(sc, 'asked_class_pct', '{:.1f}')} | "
                     f"{sc['min_class_pct']:.1f} | {s['run']} |")
        print(lines[-1], flush=True)
    if gens:
        lines += ["", "In brackets: the real test images' own figure (IS, confident share) and the floor of the distances at "
                  "the same n (n seeded real training images against the test set). Near copies: unseen real images "
                  "score 5 % by construction.", ""]
    if aes:
        lines += ["| autoencoder | data | latent | denoise | epochs | train s | test MSE per pixel | run |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
    for s in aes:
        lines.append(f"| {s['model']} | {s.get('dataset', '')} | {s['latent']} | {s['denoise']} | {s['epochs_run']} | "
                     f"{s['train_seconds']:.0f} | "
                     f"{s['test_mse_per_pixel']:.5f} | {s['run']} |")
        print(lines[-1], flush=True)
    lines += ["", "Commands:", ""] + [f"- {s['run']}: `{s['command']}`" for s in [g for _, g in gens] + aes]
    emit(lines, a.out)


if __name__ == "__main__":
    main()
