"""Self-conditioning (the GAN's: Liu et al. 2020; the flow's self-guidance: Hu et al. 2023):
k-means clusters of the training images' pixels stand in for the labels, so an unconditional data
set trains a conditional generator."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from smallvision.data.info import DatasetInfo
from smallvision.errors import UsageError


def cluster_labels(x: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """k-means (scikit-learn's mini-batch) on the training images' pixels: a cluster id per image
    and, for the checkpoint, each cluster's share and the seconds it took."""
    import numpy as np
    from sklearn.cluster import MiniBatchKMeans

    if k > len(x):
        raise UsageError(f"--clusters {k} is more than the {len(x)} training images")
    t0 = time.perf_counter()
    flat = x.reshape(len(x), -1).float().div(255).numpy()
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096).fit(flat)
    labels = torch.from_numpy(km.labels_.astype(np.int64))
    shares = (torch.bincount(labels, minlength=k).double() / len(labels)).tolist()
    return labels, {"shares": shares, "seconds": round(time.perf_counter() - t0, 2)}


def cluster_info(info: DatasetInfo, clusters: dict[str, Any]) -> DatasetInfo:
    """The data set as the networks of a cluster-conditioned GAN see it: one class per cluster."""
    return dataclasses.replace(info, num_classes=len(clusters["shares"]), class_names=())


def cluster_relabel(k: int, seed: int) -> Callable[..., tuple[torch.Tensor, DatasetInfo, dict[str, Any]]]:
    """`open_session`'s relabel hook: the images' cluster ids as labels, the clusters recorded."""

    def relabel(x: torch.Tensor, y: torch.Tensor, info: DatasetInfo) -> tuple[torch.Tensor, DatasetInfo, dict[str, Any]]:
        labels, clusters = cluster_labels(x, k, seed)
        return labels, cluster_info(info, clusters), {"clusters": clusters}

    return relabel


def cluster_shares(meta: dict[str, Any]) -> list[float] | None:
    """The clusters' training shares a checkpoint records (None: not conditioned on clusters)."""
    return meta["clusters"]["shares"] if meta.get("clusters") else None


def cluster_summary(meta: dict[str, Any]) -> dict[str, Any]:
    c = meta.get("clusters")
    return {"clusters": len(c["shares"]), "cluster_seconds": c["seconds"]} if c else {}


def draw_classes(m: int, start: int, num_classes: int, g: torch.Generator, device: torch.device,
                 label: int | None = None, shares: list[float] | None = None) -> torch.Tensor:
    """The classes of a batch of `m` samples (the `start`-th onward) from a conditional generator:
    `label` for all; else, given `shares` (a generator conditioned on clusters), clusters drawn in
    those proportions from `g`; else the classes in turn. One rule for the GAN and the flow."""
    if label is not None:
        return torch.full((m,), label, device=device)
    if shares is not None:
        return torch.multinomial(torch.tensor(shares, device=device), m, replacement=True, generator=g)
    return torch.arange(start, start + m, device=device) % num_classes
