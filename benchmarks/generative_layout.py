"""Images per second of one generative training step, contiguous (NCHW) against channels_last
weights, on random MNIST-shaped batches in the run's precision: the DCGAN step (G forward, D on
real and fake, D update, G update through D, hinge loss, 100 cluster classes) and the flow's U-Net
step. Layouts alternate, `--repeats` times each; the table gives the median.

    .venv/bin/python benchmarks/generative_layout.py [--steps 30] [--repeats 3] [--out FILE]

What it decided: `--channels-last` exists for the GANs and is off by default, because the
U-Net is slower with it (benchmarks/results/generative-layout.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _common import cpu_name, emit

from smallvision.data.info import DatasetInfo
from smallvision.engine.device import autocast_for
from smallvision.generative.nets import create_generative

INFO = DatasetInfo("mnist", 100, 1, 28, 28, (0.5,), (0.5,))  # 100 classes: a --clusters 100 run


def gan_step(channels_last: bool, batch: int, amp: object, args: dict) -> Callable[[], None]:
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.preserve_format
    nets = {k: v.to(memory_format=fmt) for k, v in create_generative("dcgan", INFO, "gan", conditional=True, **args).items()}
    G, D = nets["G"], nets["D"]
    og, od = (torch.optim.Adam(n.parameters(), 4e-4, betas=(0.5, 0.999)) for n in (G, D))
    x, y = torch.rand(batch, 1, 28, 28) * 2 - 1, torch.randint(0, 100, (batch,))

    def step() -> None:
        with amp:
            fake = G(torch.randn(batch, G.z_dim), y)
            d_real, d_fake = D(x, y), D(fake.detach(), y)
        d_loss = F.relu(1 - d_real.float()).mean() + F.relu(1 + d_fake.float()).mean()
        od.zero_grad(), d_loss.backward(), od.step()
        with amp:
            g_loss = -D(fake, y).float().mean()
        og.zero_grad(), g_loss.backward(), og.step()
    return step


def flow_step(channels_last: bool, batch: int, amp: object, args: dict) -> Callable[[], None]:
    torch.manual_seed(0)
    U = create_generative("unet", INFO, "diffusion", conditional=True)["G"]
    U = U.to(memory_format=torch.channels_last) if channels_last else U
    opt = torch.optim.Adam(U.parameters(), 1e-3)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 100, (batch,))

    def step() -> None:
        with amp:
            v = U(x, torch.rand(batch), y)
        loss = (v.float() - x).pow(2).mean()
        opt.zero_grad(), loss.backward(), opt.step()
    return step


def images_per_second(step: Callable[[], None], steps: int, batch: int) -> float:
    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--precision", default="fast")
    ap.add_argument("--out")
    a = ap.parse_args()
    amp, used = autocast_for(torch.device("cpu"), a.precision)
    cases = [("dcgan", gan_step, {}), ("dcgan d_width=16", gan_step, {"d_width": 16}), ("unet flow", flow_step, {})]
    lines = [f"Command: `python benchmarks/generative_layout.py --steps {a.steps} --repeats {a.repeats}`", "",
             f"Machine: {cpu_name()}, {torch.get_num_threads()} threads, {used}, batch {a.batch}; median of {a.repeats}", "",
             "| step | contiguous images/s | channels_last images/s | change |", "|---|---:|---:|---:|"]
    for name, build, args in cases:
        got: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(a.repeats):
            for cl in (False, True):
                got[cl].append(images_per_second(build(cl, a.batch, amp, args), a.steps, a.batch))
        plain, last = statistics.median(got[False]), statistics.median(got[True])
        lines.append(f"| {name} | {plain:.0f} | {last:.0f} | {100 * (last / plain - 1):+.0f} % |")
    emit(lines, a.out)


if __name__ == "__main__":
    main()
