"""In-memory batches for small data sets: no DataLoader, no per-sample Python.

The whole split lives on the training device as one normalised float tensor; a batch is an
index into it. The data order and augmentation of epoch ``e`` come from a generator seeded
with (seed, e), so any step of any epoch can be reproduced exactly (resume needs only the
epoch and the step).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import torch

from smallvision.data.augment import get_augmentation
from smallvision.errors import UsageError


def normalize(x_u8: torch.Tensor, mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu",
              channels_last: bool = False) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (x/255 - mean)/std, built on `device` in chunks."""
    c = x_u8.shape[1]
    m = torch.tensor(list(mean) if len(mean) == c else list(mean) * c, device=device).view(1, c, 1, 1)
    s = torch.tensor(list(std) if len(std) == c else list(std) * c, device=device).view(1, c, 1, 1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty(x_u8.shape, dtype=torch.float32, device=device).contiguous(memory_format=fmt)
    for i in range(0, len(x_u8), 8192):
        chunk = x_u8[i : i + 8192].to(device, non_blocking=True).float().div_(255)
        out[i : i + 8192] = (chunk - m) / s
    return out


class NormalizedView:
    """uint8 images that normalise on indexing: for data sets too big to hold as float32
    (a 224-px image folder). Supports what the engine uses: len, .shape, x[slice], x[index tensor]."""

    def __init__(self, x_u8: torch.Tensor, mean: Sequence[float], std: Sequence[float], channels_last: bool) -> None:
        c = x_u8.shape[1]
        self.x = x_u8
        self.mean = torch.tensor(list(mean) if len(mean) == c else list(mean) * c, device=x_u8.device).view(1, c, 1, 1)
        self.std = torch.tensor(list(std) if len(std) == c else list(std) * c, device=x_u8.device).view(1, c, 1, 1)
        self.channels_last = channels_last
        self.shape, self.device = x_u8.shape, x_u8.device

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx):  # type: ignore[no-untyped-def]
        if isinstance(idx, int):  # one image, (C, H, W) like a tensor's row (mean/std would broadcast it to 4-D)
            return self[idx : idx + 1][0]
        out = (self.x[idx].float().div_(255) - self.mean) / self.std
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last and out.dim() == 4 else out


def as_model_input(x_u8: torch.Tensor, mean: Sequence[float], std: Sequence[float], device: torch.device | str,
                   channels_last: bool = False, max_float_bytes: int = 512 << 20) -> torch.Tensor | NormalizedView:
    """Normalised float32 on `device` when it fits in `max_float_bytes`, else a NormalizedView."""
    if x_u8.numel() * 4 <= max_float_bytes:
        return normalize(x_u8, mean, std, device, channels_last)
    return NormalizedView(x_u8.to(device), mean, std, channels_last)


def training_subset(x: torch.Tensor, y: torch.Tensor, limit: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The seeded `limit`-image subset that `--train-limit` trains on (all images when 0)."""
    if not limit:
        return x, y
    keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:limit]
    return x[keep], y[keep]


def class_weights(rule: str, y: torch.Tensor, k: int) -> torch.Tensor | None:
    """The loss's per-class weights for `rule` (TrainConfig.class_weights) on training labels `y`:
    None for 'none'; 'auto': sqrt(N / (K · (count + 1))) (the square root of scikit-learn's
    'balanced'; +1 so an absent class gets a finite weight), scaled so the mean weight over the
    images is 1; else the K given numbers. Unsmoothed 'balanced' weights (87 for a class kept at
    1 % of MNIST) made mnist-fast's one epoch predict that class everywhere (44 % accuracy);
    benchmarks/results/imbalance.md has the smoothed figures."""
    if rule == "none":
        return None
    if rule == "auto":
        counts = torch.bincount(y.cpu(), minlength=k).double()
        w = (len(y) / (k * (counts + 1))).sqrt()  # smoothed: the square root of inverse frequency
        return (w / ((w * counts).sum() / len(y))).float()  # the average image keeps weight 1: same step size
    w = [float(v) for v in rule.split(",")]
    if len(w) != k:
        raise UsageError(f"--class-weights gives {len(w)} weights for {k} classes")
    return torch.tensor(w)


def split_validation(n: int, val_size: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train_idx, val_idx). `val_size` < 1 is a fraction, ≥ 1 a count, 0 means none."""
    if val_size < 0:
        raise UsageError(f"--val-size must be ≥ 0, got {val_size:g}")
    n_val = int(round(val_size * n)) if val_size < 1 else int(val_size)
    if n_val >= n:
        raise UsageError(f"--val-size {val_size:g} leaves no training images (the training set holds {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def epoch_generator(seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + epoch * 7_919) % (2**63))
    return g


def random_translate(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """Shift each image by up to `pad` pixels in x and y, repeating the border pixels.

    Vectorised: one padded copy and one gather, (B, C, H, W) -> (B, C, H, W).
    """
    b, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=g.device).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=g.device).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[bi, ci, rows, cols]


def random_hflip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=g, device=g.device) < 0.5).to(x.device)[:, None, None, None]
    return torch.where(flip, x.flip(3), x)


def augment_batch(xb: torch.Tensor, g: torch.Generator, shift: int, hflip: bool, augment) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The training augmentations, in their fixed order, drawn from the step's generator `g`."""
    if shift:
        xb = random_translate(xb, shift, g)
    if hflip:
        xb = random_hflip(xb, g)
    return augment(xb, g) if augment is not None else xb


def torch_order_seed() -> int:
    """Draw from the global torch RNG exactly what iterating a DataLoader(shuffle=True) draws at the
    start of an epoch: the iterator's base seed, then RandomSampler's seed for its randperm. With
    the same global seed and model init, a tutorial script's batches are replayed one for one."""
    torch.empty((), dtype=torch.int64).random_()  # _BaseDataLoaderIter._base_seed
    return int(torch.empty((), dtype=torch.int64).random_().item())  # RandomSampler.__iter__


def epoch_order(n: int, seed: int, epoch: int, perm_seed: int | None = None,
                weights: torch.Tensor | None = None) -> torch.Tensor:
    """The shuffled order of `n` items in `epoch`: a pure function of (seed, epoch), or of a
    DataLoader's `perm_seed` when replaying one (`torch_order_seed`). Shared by both loaders, so
    in-memory and streamed folders see the same batches. With per-item `weights` (--sampler
    balanced) the epoch is `n` draws with replacement in proportion to them, as PyTorch's
    WeightedRandomSampler draws."""
    g = epoch_generator(seed, epoch) if perm_seed is None else torch.Generator().manual_seed(perm_seed)
    if weights is not None:
        return torch.multinomial(weights.double().cpu(), n, replacement=True, generator=g)
    return torch.randperm(n, generator=g)


IMBALANCED = 4.0  # largest / smallest training class at which check and the report suggest the flags
IMBALANCE_FLAGS = "--class-weights auto or --sampler balanced"


def imbalance_ratio(counts: Sequence[int]) -> float:
    """Largest over smallest class count (an empty class counts as 1); 0 without classes."""
    return max(counts) / max(min(counts), 1) if len(counts) else 0.0


def balanced_weights(y: torch.Tensor, k: int) -> torch.Tensor:
    """--sampler balanced: each image drawn with probability 1 / (K · its class's count), so every
    class present fills the same share of an epoch (a rare class's images repeat, a common class's
    are subsampled; the epoch keeps its length)."""
    counts = torch.bincount(y.cpu(), minlength=k).double()
    return 1.0 / counts[y.cpu()]


def step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """The augmentation draws of one step: per step, so skipping steps (a mid-epoch resume) is exact."""
    return epoch_generator(seed + 1, epoch * 100_003 + step)


class BatchSource(Protocol):
    """What the loops read batches from: `TensorLoader` (images in memory, on the device) and
    `data.stream.StreamLoader` (decoded from the files per batch) both are one."""

    x: Any  # the images (tensor, or the file list of a streamed folder): len() is the split's size
    y: torch.Tensor
    batch_size: int
    skipped: list[str]  # files found unreadable while streaming, named (in memory: none)

    def __len__(self) -> int: ...

    def batches(self, epoch: int, start_step: int = 0, perm_seed: int | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def in_order(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def rows(self, idx: list[int]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


class TensorLoader:
    """Batches from tensors already on the device. ``batch_size`` 0 means the full set (full-batch GD)."""

    skipped: list[str] = []  # noqa: RUF012 - read-only: tensors in memory have no unreadable files

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0,
                 drop_last: bool = False, shift: int = 0, hflip: bool = False, augment: str = "none",
                 shard: tuple[int, int] = (0, 1), sample_weights: torch.Tensor | None = None) -> None:
        self.x, self.y = x, y
        self.sample_weights = sample_weights  # --sampler balanced: per-image draw weights (epoch_order)
        self.rank, self.world = shard  # several processes: each keeps rows rank::world of every global batch
        self.batch_size = batch_size if batch_size > 0 else len(x)
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.shift, self.hflip = shift, hflip
        self.augment = get_augmentation(augment)

    def __len__(self) -> int:
        n, b = len(self.x), self.batch_size
        return n // b if self.drop_last and n >= b else -(-n // b)

    def batches(self, epoch: int, start_step: int = 0, perm_seed: int | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of `epoch`, starting at `start_step` (for an exact mid-epoch resume).

        `perm_seed` replaces our (seed, epoch) order by the one a PyTorch DataLoader(shuffle=True)
        would draw (see `torch_order_seed`)."""
        n = len(self.x)
        # One batch per epoch (full-batch GD): its gradient does not depend on the order, so skip
        # the shuffle, which would copy the whole set every step.
        shuffle = self.shuffle and (self.batch_size < n or self.sample_weights is not None)
        order = epoch_order(n, self.seed, epoch, perm_seed, self.sample_weights).to(self.x.device) if shuffle else None
        for step in range(len(self)):
            lo = step * self.batch_size
            if step < start_step:
                continue
            aug_g = step_generator(self.seed, epoch, step)
            if order is None:
                xb, yb = self.x[lo : lo + self.batch_size], self.y[lo : lo + self.batch_size]
            else:
                idx = order[lo : lo + self.batch_size]
                xb, yb = self.x[idx], self.y[idx]
            xb = augment_batch(xb, aug_g, self.shift, self.hflip, self.augment)
            # the same global batch (order and augmentation draws) on every process, then this one's rows
            yield (xb[self.rank :: self.world], yb[self.rank :: self.world]) if self.world > 1 else (xb, yb)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches(0)

    def in_order(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image once, in order, unaugmented: the whole split as one batch (it is in memory)."""
        yield self.x, self.y

    def rows(self, idx: list[int]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """These images, unaugmented, in batches (fitting the OOD detector on a training sample)."""
        for i in range(0, len(idx), 256):
            part = torch.tensor(idx[i : i + 256], device=self.y.device)
            yield self.x[part.to(self.x.device)], self.y[part]
