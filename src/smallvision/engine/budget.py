"""How fast this machine runs a model: the figures a time budget is turned into steps with.

`measure_speed` times the real network at the run's size, precision and memory format on
random tensors (a few batches, about 3-6 s on 2 CPU cores): a forward pass (the feature pass and
every evaluation) and a training step of the whole network (fine-tuning), per image; and the
decoding of a few of the folder's own photos. Measured once per process and settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch


@dataclass(frozen=True)
class Speed:
    decode: float  # seconds per photo (one process), read and resized to the working size
    forward: float  # seconds per image, inference
    train: float  # seconds per image, forward + backward + optimiser step of what phase 2 trains
    device: str

    def describe(self) -> str:
        return (f"{1 / self.forward:.0f} images/s forward, {1 / self.train:.1f} images/s training, "
                f"{1 / self.decode:.0f} photos/s decoding per process ({self.device})")


def _top_only(net: torch.nn.Module, top_stages: int, x: torch.Tensor) -> tuple[torch.nn.Module, torch.Tensor]:
    """--top-stages: what phase 2 trains (the last stages and the head) and a batch of its input."""
    from smallvision.engine.setup import TopAndHead
    from smallvision.models.base import split_features

    bottom, top = split_features(net, top_stages)
    with torch.no_grad():
        a = bottom.eval()(x)
    net.features.requires_grad_(False)
    top.requires_grad_(True)
    return TopAndHead(top, net.head), a


def _timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """The fastest of `repeats` calls after a warm-up (allocations, kernels chosen): the least
    disturbed by whatever else the machine is doing."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@cache
def measure_speed(model: str, size: int, channels: int, num_classes: int, precision: str, channels_last: bool,
                  device: str, sample: tuple[Path, ...] = (), top_stages: int = 0) -> Speed:
    """Per-image seconds of inference and of a training step for `model` at `size` (with
    `top_stages`: of its last stages and head on the activations below), and per-photo decoding."""
    from smallvision.data.folder import open_image, resize_center_crop
    from smallvision.data.info import DatasetInfo
    from smallvision.engine.device import autocast_for, resolve_device
    from smallvision.models import create_model

    dev = resolve_device(device)
    amp, _ = autocast_for(dev, precision)
    info = DatasetInfo("probe", num_classes, channels, size, size, (0.5,) * channels, (0.5,) * channels,
                       tuple(str(i) for i in range(num_classes)))
    torch.manual_seed(0)
    net = create_model(model, info).to(dev)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    batch = 32 if dev.type != "cpu" else 16
    x = torch.randn(batch, channels, size, size, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch,), device=dev)
    trained, inputs = (net, x) if not top_stages else _top_only(net, top_stages, x)
    opt = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=1e-5)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def forward() -> None:
        with torch.inference_mode(), amp:
            net(x)
        sync()

    def step() -> None:
        with amp:
            loss = torch.nn.functional.cross_entropy(trained(inputs).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()

    net.eval()
    fwd = _timed(forward, 3) / batch
    trained.train()
    for m in trained.modules():  # BatchNorm as the photo recipes fine-tune: on its pretrained statistics
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    trn = _timed(step, 2 if not top_stages else 3) / batch
    dec = 0.005
    if sample:
        t0 = time.perf_counter()
        ok = 0
        for p in sample:
            try:
                resize_center_crop(open_image(p, channels), size)
                ok += 1
            except Exception:  # unreadable files are reported when the folder is decoded
                continue
        dec = (time.perf_counter() - t0) / max(ok, 1)
    return Speed(dec, fwd, trn, str(dev))
