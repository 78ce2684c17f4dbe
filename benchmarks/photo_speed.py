"""Training and inference speed of nets for 64-128 px photos on this CPU: our photo-net (photo-fast and
photo-accurate widths) next to torchvision's resnet18 and mobilenet_v3_small (from scratch) and our
resnet-small, two classes, random RGB batches of 64, the engine's own training step (SGD, onecycle
learning rate, bf16 autocast where native + channels_last: the photo recipes' settings).

    .venv/bin/python benchmarks/photo_speed.py --sizes 64,96,128 --out benchmarks/results/photo_speed.md

Training: images/s over 15 steps after 5 warm-up steps (median step time); inference: images/s
of eval-mode forward passes in batches of 256, one view per image (the photo recipes' --tta
averages 10 views, so their test pass costs 10× this).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from smallvision.api import make_config
from smallvision.data.info import DatasetInfo
from smallvision.engine.device import autocast_for
from smallvision.engine.setup import build_model
from smallvision.engine.trainer import train_step
from smallvision.models import count_params

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, emit  # noqa: E402

NETS = [
    ("photo-net (photo-fast)", "photo-net", {}),
    ("photo-net (photo-accurate widths)", "photo-net", {"widths": [48, 96, 192, 384], "stem": 32}),
    ("resnet-small", "resnet-small", {}),
    ("torchvision resnet18", "resnet18", {"pretrained": False}),
    ("torchvision mobilenet_v3_small", "mobilenet_v3_small", {"pretrained": False}),
]


def measure(model: str, args: dict, size: int, precision: str, batch: int = 64) -> tuple[float, float, int]:
    info = DatasetInfo("photos", 2, 3, size, size, (0.5,) * 3, (0.25,) * 3)
    cfg = make_config("photo-fast", model=model, model_args=args, precision=precision, device="cpu", batch_size=batch)
    m, opt, _ = build_model(cfg, info, torch.device("cpu"))
    amp, _ = autocast_for(torch.device("cpu"), cfg.precision)
    m = m.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,))
    times = []
    for i in range(20):
        t0 = time.perf_counter()
        train_step(m, opt, x, y, cfg.lr, cfg, amp)
        if i >= 5:
            times.append(time.perf_counter() - t0)
    train_ips = batch / statistics.median(times)
    m.eval()
    m.tta = False  # one view per image (photo-fast's --tta averages 10: its test pass costs 10× this)
    xe = torch.randn(256, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), (amp or torch.autocast("cpu", enabled=False)):
        m(xe)
        t0 = time.perf_counter()
        for _ in range(3):
            m(xe)
    infer_ips = 3 * 256 / (time.perf_counter() - t0)
    return train_ips, infer_ips, count_params(m)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64,96,128")
    ap.add_argument("--precision", default="fast")
    ap.add_argument("--out")
    a = ap.parse_args()
    lines = [f"Command: `.venv/bin/python benchmarks/photo_speed.py --sizes {a.sizes} --precision {a.precision}` "
             f"({torch.get_num_threads()} threads, {cpu_name()}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')})",
             "", "| net | params | px | train images/s | inference images/s |", "|---|---:|---:|---:|---:|"]
    for size in map(int, a.sizes.split(",")):
        for label, model, args in NETS:
            tr, inf, n = measure(model, args, size, a.precision)
            lines.append(f"| {label} | {n:,} | {size} | {tr:,.0f} | {inf:,.0f} |")
            print(lines[-1], flush=True)
    emit(lines, a.out)


if __name__ == "__main__":
    main()
