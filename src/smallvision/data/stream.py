"""Streaming batches from image files, for folders too big to hold decoded in memory.

`StreamLoader` has `TensorLoader`'s interface (``len``, ``batches(epoch, start_step)``, ``x``,
``y``) so the training loop does not know which one it has. Worker processes decode and resize
the files of each batch (PyTorch's DataLoader with ``persistent_workers``: the workers start
once per run, not once per epoch); the main process normalises and augments whole batches on the
device, as for in-memory data. The order is the same seeded function of (seed, epoch) as
`TensorLoader`'s, so a resumed run sees the same batches. A file that cannot be decoded is left
out of its batch, with one warning naming it, and counted in `skipped`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import torch

from smallvision.data.augment import get_augmentation
from smallvision.data.folder import ImageFiles, _Decode
from smallvision.data.loader import augment_batch, epoch_order, step_generator


def _collate(batch: list[tuple[torch.Tensor, bool, str]]) -> tuple[torch.Tensor, torch.Tensor, list[int], list[str]]:
    ok = [i for i, (_, good, _) in enumerate(batch) if good]
    errors = [err for _, good, err in batch if not good]
    bad = [i for i, (_, good, _) in enumerate(batch) if not good]
    x = torch.stack([batch[i][0] for i in ok]) if ok else torch.zeros(0, *batch[0][0].shape, dtype=torch.uint8)
    return x, torch.tensor(ok, dtype=torch.long), bad, errors


class _Batches(torch.utils.data.Sampler):
    """The index lists of one epoch; set before each iteration (the DataLoader outlives epochs)."""

    def __init__(self) -> None:
        self.lists: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.lists)

    def __len__(self) -> int:
        return len(self.lists)


class StreamLoader:
    def __init__(self, files: ImageFiles, mean: Sequence[float], std: Sequence[float], device: torch.device,
                 batch_size: int, seed: int = 0, channels_last: bool = False, shift: int = 0, hflip: bool = False,
                 augment: str = "none", workers: int | None = None, shard: tuple[int, int] = (0, 1),
                 sample_weights: torch.Tensor | None = None) -> None:
        self.x, self.y = files, files.labels()
        self.sample_weights = sample_weights  # --sampler balanced (loader.epoch_order)
        self.rank, self.world = shard  # several processes: each decodes rows rank::world of every batch
        self.batch_size = batch_size if batch_size > 0 else len(files)
        self.seed, self.device, self.channels_last = seed, device, channels_last
        self.shift, self.hflip, self.augment = shift, hflip, get_augmentation(augment)
        c = files.channels
        self.mean = torch.tensor(list(mean), device=device).view(1, c, 1, 1)
        self.std = torch.tensor(list(std), device=device).view(1, c, 1, 1)
        self.skipped: list[str] = []
        self._sampler = _Batches()
        workers = files.workers if workers is None else workers
        self._loader = torch.utils.data.DataLoader(
            _Decode(files.items, files.channels, files.size), batch_sampler=self._sampler, num_workers=workers,
            persistent_workers=workers > 0, collate_fn=_collate, pin_memory=device.type == "cuda",
            prefetch_factor=4 if workers > 0 else None)

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def _prepare(self, x_u8: torch.Tensor) -> torch.Tensor:
        x = x_u8.to(self.device, non_blocking=True).float().div_(255).sub_(self.mean).div_(self.std)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def batches(self, epoch: int, start_step: int = 0, perm_seed: int | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, b = len(self.x), self.batch_size
        order = epoch_order(n, self.seed, epoch, perm_seed, self.sample_weights).tolist()
        self._sampler.lists = [order[i : i + b][self.rank :: self.world] for i in range(start_step * b, n, b)]
        for step, (x_u8, kept, bad, errors) in enumerate(self._loader, start=start_step):
            idx = self._sampler.lists[step - start_step]
            for i, err in zip(bad, errors, strict=True):
                name = str(self.x.items[idx[i]][0])
                if not any(s.startswith(name) for s in self.skipped):
                    self.skipped.append(f"{name} ({err})")
                    warnings.warn(f"skipping {name}: {err}", stacklevel=2)
            if not len(kept):
                continue
            xb = self._prepare(x_u8)
            yb = self.y[torch.tensor(idx)[kept]].to(self.device)
            yield augment_batch(xb, step_generator(self.seed, epoch, step), self.shift, self.hflip, self.augment), yb

    def in_order(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image once, in file order, unaugmented (to cache a frozen backbone's features)."""
        n, b = len(self.x), self.batch_size
        self._sampler.lists = [list(range(i, min(i + b, n))) for i in range(0, n, b)]
        for (x_u8, kept, _, _), idx in zip(self._loader, self._sampler.lists, strict=True):
            if len(kept):
                yield self._prepare(x_u8), self.y[torch.tensor(idx)[kept]].to(self.device)

    def rows(self, idx: list[int]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """These images, unaugmented, decoded in batches."""
        b = self.batch_size
        self._sampler.lists = [list(idx[i : i + b]) for i in range(0, len(idx), b)]
        for (x_u8, kept, _, _), part in zip(self._loader, self._sampler.lists, strict=True):
            if len(kept):
                yield self._prepare(x_u8), self.y[torch.tensor(part)[kept]].to(self.device)


__all__ = ["StreamLoader"]
