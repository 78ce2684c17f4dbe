"""Instance selection (DeVries et al. 2020, "Instance Selection for GANs"): train a generative
model on the share of its training images that lie in the densest parts of the data, so a small
model spends its capacity on typical images rather than on the rare, odd ones.

Density here is the distance to an image's 5th nearest neighbour among the images of its own
group, in the first 64 principal components of the pixels (the paper scores density in an
embedding; no label and no classifier is read here). The group is the class or k-means cluster the
generator is conditioned on, so every class keeps the same share and the class balance stays as
it was; without one, the whole training set is one group, which favours the classes whose images
are alike in pixels (MNIST at 0.8: ones 13.9 % instead of 11.2 %, twos and eights 7.2 % instead of
9.9 / 9.8 %) — use it with ``--clusters``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch

NEIGHBOUR = 5  # the k of the k-th-nearest-neighbour density
COMPONENTS = 64


def members(groups: torch.Tensor | None, n: int) -> Iterator[torch.Tensor]:
    """The indices of each group's images (None: all `n` images are one group)."""
    if groups is None:
        yield torch.arange(n)
        return
    groups = groups.cpu()
    for g in groups.unique():
        yield (groups == g).nonzero().squeeze(1)


def neighbour_distances(x: torch.Tensor, groups: torch.Tensor | None, k: int = NEIGHBOUR,
                        components: int = COMPONENTS, chunk: int = 4096) -> torch.Tensor:
    """Each image's distance to its k-th nearest other image of its group (large: a sparse region),
    in the first `components` principal components of the pixels."""
    flat = x.reshape(len(x), -1).float().div(255)
    flat = flat - flat.mean(0)
    q = min(components, *flat.shape)
    with torch.random.fork_rng(devices=[]):  # pca_lowrank draws a random projection: seeded, the caller's RNG untouched
        torch.manual_seed(0)
        _, _, v = torch.pca_lowrank(flat, q=q, center=False, niter=4)
    z = flat @ v
    out = torch.zeros(len(x))
    for idx in members(groups, len(x)):
        kk = min(k, len(idx) - 1)
        if kk < 1:  # a group of one image: nothing to compare with, kept
            continue
        zg = z[idx]
        for i in range(0, len(idx), chunk):
            d = torch.cdist(zg[i:i + chunk], zg)  # includes the image itself, at distance 0
            out[idx[i:i + chunk]] = d.topk(kk + 1, dim=1, largest=False).values[:, kk]
    return out


def select_dense(x: torch.Tensor, groups: torch.Tensor | None, share: float) -> tuple[torch.Tensor, dict[str, Any]]:
    """The indices (sorted) of the `share` densest images of each group (at least one per group)
    and, for the checkpoint, the share, the number kept and the seconds it took."""
    t0 = time.perf_counter()
    dist = neighbour_distances(x, groups)
    keep = [idx[dist[idx].argsort(stable=True)[:max(1, round(share * len(idx)))]] for idx in members(groups, len(x))]
    kept = torch.cat(keep).sort().values
    return kept, {"share": share, "images": len(kept), "of": len(x), "seconds": round(time.perf_counter() - t0, 2)}


def selection_summary(meta: dict[str, Any]) -> dict[str, Any]:
    r = meta.get("retained")
    return {"retained_images": r["images"], "retain_seconds": r["seconds"]} if r else {}
