"""Data-parallel training across processes: PyTorch DistributedDataParallel, launched by `torchrun`.

`torchrun --nproc-per-node N -m smallvision train ...` (or `smallvision train --nproc N ...`, which
runs that command) starts N processes; each finds its rank in the environment torchrun sets
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) and joins one process group: gloo on the CPU,
nccl on CUDA (one GPU per process, ``cuda:LOCAL_RANK``).

Decisions, stated once:
- ``--batch-size`` is the GLOBAL batch: every optimiser step sees ``batch_size`` images in all,
  ``batch_size / N`` per process. So a recipe's learning rate, schedule and epochs mean the same
  on 1 or N processes, and a 2-process run computes what the 1-process run computes up to
  BatchNorm statistics (per process unless ``--sync-bn``) and floating-point summation order.
- Each process builds the same seeded global batch (same order, same augmentation draws) and
  keeps rows ``rank::N`` of it: in-memory data sets are sharded per batch, not per epoch.
- Metrics are sums reduced across processes; validation and test are sharded the same way.
- Only rank 0 logs, writes checkpoints (from the unwrapped model), metrics and reports; the run
  folder's name is rank 0's, broadcast to the others. Checkpoints load anywhere (one process or N).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def on(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_environment() -> Dist:
    """The process's place in a torchrun job (rank 0 of 1 when not launched by torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(d: Dist, device: torch.device) -> torch.device:
    """Join the process group (once); returns this process's device (cuda:LOCAL_RANK on CUDA)."""
    if not d.on:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def wrap(model: torch.nn.Module, d: Dist, device: torch.device, sync_bn: bool, partly_frozen: bool = False
         ) -> torch.nn.Module:
    """The module training steps call: DDP around `model` (SyncBatchNorm first with `sync_bn`).
    `partly_frozen` (--freeze): some parameters get no gradient in some epochs, which DDP must expect."""
    if not d.on:
        return model
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=partly_frozen)


def all_sum(values: list[float], device: torch.device, d: Dist) -> list[float]:
    """Element-wise sum of `values` over all processes (the same list everywhere)."""
    if not d.on:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast(obj: Any, d: Dist) -> Any:
    """Rank 0's `obj` on every process."""
    if not d.on:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(d: Dist) -> None:
    if d.on:
        dist.barrier()


def shutdown(d: Dist) -> None:
    if d.on and dist.is_initialized():
        dist.destroy_process_group()
