"""Which weight average of a GAN's generator, chosen on the validation protocol of sampling.py.

One `gan train` run (its flags after `--`; `--name` and `--runs-dir` required) also keeps, beside
the run's own average (`--ema`, 0.999 per step unless given), power-function averages
(`--ema-rel σ`, Karras et al. 2024) of several widths σ. An average does not change training, so
all of them average the same generator's weights, and `gan train <the same flags> --ema-rel σ`
(or `--ema d`) trains that generator again and saves that row's average. `--decays` adds
fixed-decay averages (the GANs' default, 0.999) for comparison. Each average is then judged as
sampling.py judges a truncation: `--samples` images of noise seed 1000 at each truncation T of
`--values` against 10 000 seeded training images (the test set is not read).

    SMALLVISION_DATA=../shared/data python benchmarks/ema_profiles.py --sigmas 0.05,0.1,0.15,0.2,0.25 \\
        --out benchmarks/results/ema-profiles.md -- --model dcgan --clusters 100 --mode-seeking 0.1 \\
        --lr 4e-4 --channels-last --epochs 40 --max-time 560 --seed 0 --runs-dir runs/gen4 --name NAME
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit  # noqa: E402
from sampling import judge, validation_reference  # noqa: E402


def main() -> None:
    from torch.optim.swa_utils import AveragedModel

    from smallvision.cli.main import main as cli
    from smallvision.generative import gan
    from smallvision.generative.clusters import cluster_shares
    from smallvision.generative.loop import average_fn, load_net

    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit("usage: ema_profiles.py [--sigmas ...] [--values ...] [--samples N] [--out F] -- <gan train flags>")
    cut = argv.index("--")
    ap = argparse.ArgumentParser()
    ap.add_argument("--sigmas", default="0.05,0.1,0.15,0.2,0.25", help="the power-function averages' widths σ_rel")
    ap.add_argument("--decays", default="0.999", help="fixed-decay averages (--ema d) kept as well ('': none)")
    ap.add_argument("--values", default="0,2.5,2,1.75,1.5", help="the truncations T tried (0: off)")
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--out")
    a, train = ap.parse_args(argv[:cut]), argv[cut + 1:]
    flags = dict(zip(train, train[1:], strict=False))
    if "--name" not in flags or "--runs-dir" not in flags:
        sys.exit("give the run --name and --runs-dir after --")
    kinds = {**{f"--ema-rel {float(v):g}": average_fn("gan", 0.0, float(v)) for v in a.sigmas.split(",") if v},
             **{f"--ema {float(v):g}": average_fn("gan", float(v)) for v in a.decays.split(",") if v}}
    averages: dict[str, AveragedModel] = {}
    step = gan.gan_step

    def step_and_average(s, xb, yb):  # type: ignore[no-untyped-def]
        step(s, xb, yb)
        if not averages:  # built (a copy of G) after the first step, as the run's own average is
            averages.update({kind: AveragedModel(s.nets["G"], use_buffers=True, multi_avg_fn=fn)
                             for kind, fn in kinds.items()})
        for avg in averages.values():
            avg.update_parameters(s.nets["G"])

    gan.gan_step = step_and_average  # train_gan looks gan_step up when it starts the loop
    argv0, sys.argv = sys.argv, ["smallvision", "gan", "train", "--json", *train]  # the command the run records
    try:
        cli(sys.argv[1:])
    except SystemExit as e:
        if e.code:
            raise
    finally:
        gan.gan_step, sys.argv = step, argv0
    run = str(Path(flags["--runs-dir"]) / flags["--name"])
    dev = torch.device("cpu")
    G, meta = load_net(run, "G", dev)
    steps = json.loads((Path(run) / "summary.json").read_text())["steps"]
    scorer, ref = validation_reference(run, meta, dev, 10000)
    k = G.embed.num_embeddings if G.embed is not None else meta["dataset"]["num_classes"]
    own = meta["config"]["ema_rel"] and f"--ema-rel {meta['config']['ema_rel']:g}" or f"--ema {meta['config']['ema']:g}"
    values = [float(v) for v in a.values.split(",")]
    lines = [f"Command: `{shlex.join(['python', 'benchmarks/ema_profiles.py'] + sys.argv[1:])}`", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores. One training run, "
             f"{steps} generator steps; each cell: Fréchet distance to 10 000 training images / IS / "
             f"confident % of {a.samples} samples of noise seed 1000 at truncation T (the test set is not read).", "",
             "| average | " + " | ".join(f"T {v:g}" for v in values) + " |", "|---|" + "---:|" * len(values)]
    rows = [(f"the run's own ({own})", G.state_dict())] + [(kind, avg.module.state_dict()) for kind, avg in averages.items()]
    for name, state in rows:
        G.load_state_dict(state)
        cells = []
        for t in values:
            images = gan.generate(G, a.samples, 1000, dev, num_classes=k, shares=cluster_shares(meta), truncation=t)
            fid, inc, conf, _ = judge(images, scorer, ref)
            cells.append(f"{fid:.3f} / {inc:.2f} / {conf:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    emit(lines, a.out)


if __name__ == "__main__":
    main()
