"""Images per second of the GAN training step (`gan.gan_step`) with and without its two speed-ups:
one discriminator call on the real and generated batches stacked (`gan._judge_both`, for a D that
judges each image alone) and fused Adam. Variants are timed in turns inside one process, so a
machine whose speed drifts (a shared host) drifts under all of them alike; the median of the
rounds is printed.

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/gan_step.py \\
        --out benchmarks/results/gan-step.md -- --clusters 300 --mode-seeking 0.05 --lr 2.4e-3 --channels-last

Flags after `--` are `gan train`'s (the network and its settings); the data are the first
`--images` training images (MNIST by default).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, emit  # noqa: E402

VARIANTS = {"stacked D call, fused Adam (shipped)": (True, True), "two D calls, fused Adam": (False, True),
            "stacked D call, plain Adam": (True, False), "two D calls, plain Adam (before)": (False, False)}


def main() -> None:
    from smallvision.cli.main import main as cli
    from smallvision.generative import gan

    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60, help="timed steps per variant and round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--images", type=int, default=20000, help="training images loaded (--train-limit)")
    ap.add_argument("--out")
    a, train = ap.parse_args(argv[:cut]), argv[cut + 1:]
    rates: dict[str, list[float]] = {k: [] for k in VARIANTS}
    real_train, real_rule = gan.train_gan, gan.per_image

    def bench(cfg, runs_dir, command, resume, progress):  # type: ignore[no-untyped-def]  # train_gan's signature
        from smallvision.generative.clusters import cluster_relabel
        from smallvision.generative.loop import open_session

        relabel = cluster_relabel(cfg.clusters, cfg.seed) if cfg.clusters else None
        s = open_session(cfg, runs_dir, command, None, progress, relabel)
        batches = s.loader.batches(1, 0)
        adams = {fused: {k: torch.optim.Adam(v.parameters(), lr=s.optimizers[f"optim_{k.lower()}"].param_groups[0]["lr"],
                                             betas=(cfg.beta1, 0.999), fused=fused or None)
                         for k, v in s.nets.items()} for fused in (True, False)}

        def run(n: int, stacked: bool, fused: bool) -> float:
            nonlocal batches
            gan.per_image = real_rule if stacked else (lambda D: False)
            s.optimizers.update({f"optim_{k.lower()}": o for k, o in adams[fused].items()})
            t0 = time.perf_counter()
            for _ in range(n):
                try:
                    xb, yb = next(batches)
                except StopIteration:
                    batches = s.loader.batches(1, 0)
                    xb, yb = next(batches)
                s.state.step += 1
                gan.gan_step(s, xb, yb)
            return n * cfg.batch_size / (time.perf_counter() - t0)

        for v in VARIANTS.values():
            run(10, *v)  # warm-up
        for _ in range(a.rounds):
            for k, v in VARIANTS.items():
                rates[k].append(run(a.steps, *v))
        s.run.unlock()
        return {}

    gan.train_gan = bench  # the CLI looks train_gan up when it runs: the flags parsed and checked as `gan train`'s
    with tempfile.TemporaryDirectory() as tmp:
        try:
            cli(["gan", "train", "--json", "--train-limit", str(a.images), "--no-score", "--no-report",
                 "--runs-dir", tmp, *train])
        except SystemExit as e:
            if e.code:
                raise
        finally:
            gan.train_gan, gan.per_image = real_train, real_rule
    base = statistics.median(rates["two D calls, plain Adam (before)"])
    lines = [f"Command: `{shlex.join(['python', 'benchmarks/gan_step.py'] + sys.argv[1:])}`", "",
             f"Machine: {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}. "
             f"{a.rounds} rounds of {a.steps} steps per variant, in turns; median images/s.", "",
             "| variant | images/s (median) | rounds | vs before |", "|---|---:|---|---:|"]
    for k, r in rates.items():
        m = statistics.median(r)
        lines.append(f"| {k} | {m:.0f} | {', '.join(f'{x:.0f}' for x in r)} | {m / base - 1:+.1%} |")
    emit(lines, a.out)


if __name__ == "__main__":
    main()
