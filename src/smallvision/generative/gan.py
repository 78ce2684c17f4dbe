"""`smallvision gan train|sample`: the GAN loop (pytorch/examples' dcgan shape) and sampling.

Per step: one discriminator update on a real and a generated batch, then one generator update
through the updated discriminator.
Per epoch: a grid of the same fixed noise (so the frames of the GIF are comparable), the loss
row, ``generator.safetensors`` and the resume state. At the end: the loss curves, the GIF, the
quality score (score.py) and the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from smallvision.engine.progress import Progress
from smallvision.errors import UsageError
from smallvision.generative.clusters import cluster_relabel, cluster_shares, cluster_summary, draw_classes
from smallvision.generative.config import GanConfig, check_truncation
from smallvision.generative.loop import (
    GenSession,
    finish_generator,
    open_session,
    quality_point,
    run_session,
)
from smallvision.generative.losses import GAN_LOSSES
from smallvision.report.plots import plot_losses, save_grid
from smallvision.runfolder import RunFolder


def _noise(n: int, s: GenSession, g: torch.Generator | None = None) -> torch.Tensor:
    return torch.randn(n, s.nets["G"].z_dim, device=s.device, generator=g)


def gan_step(s: GenSession, xb: torch.Tensor, yb: torch.Tensor) -> None:
    """One discriminator update on the real and a generated batch, then one generator update
    through the updated discriminator; loss sums into s.meter."""
    G, D, cfg = s.nets["G"], s.nets["D"], s.cfg
    loss_fn = GAN_LOSSES.get(cfg.loss)
    z, yf = _noise(len(xb), s), yb  # the generated batch's noise and classes
    if cfg.mode_seeking:  # pairs (i, n + i): the same class, different noise
        half = len(xb) // 2
        yf = torch.cat([yb[: len(xb) - half], yb[:half]])
    yr, yg = (yb, yf) if cfg.conditional or cfg.clusters else (None, None)  # what D and G are told
    if cfg.lr_decay:
        scale = lr_scale(cfg, s.state.step, len(s.loader))
        for name, base in (("optim_d", cfg.d_lr or cfg.lr), ("optim_g", cfg.lr)):
            for group in s.optimizers[name].param_groups:
                group["lr"] = base * scale
    with s.amp:  # the networks in the run's precision, the losses in fp32
        fake = G(z, yg)  # (B, C, H, W) in [-1, 1]
        # D scores each image alone, so one call on both batches stacked gives the two calls' scores
        scores = D(torch.cat([xb, fake.detach()]), torch.cat([yr, yg]) if yr is not None else None).float()
    d_loss = loss_fn(scores[: len(xb)], scores[len(xb):], False)
    s.optimise("optim_d", d_loss, what="discriminator loss")
    D.requires_grad_(False)  # G's step needs D's input gradient only, not its weights' (discarded anyway)
    with s.amp:
        d_gen = D(fake, yg).float()
    D.requires_grad_(True)
    g_loss = loss_fn(None, d_gen, True)
    if cfg.mode_seeking:
        g_loss = g_loss + cfg.mode_seeking * mode_seeking_loss(fake, z)
    s.optimise("optim_g", g_loss, averaged=G, what="generator loss")
    s.add("g_loss", g_loss.detach() * len(xb))
    s.add("d_loss", d_loss.detach() * len(xb))


def lr_scale(cfg: GanConfig, step: int, steps_per_epoch: int) -> float:
    """--lr-decay F: the learning rates' factor at `step` (0-based) of the run's step budget,
    --epochs × the steps of an epoch: the registered ``hold-decay`` schedule, a function of the
    step alone (the same on any machine, and after a resume)."""
    from smallvision.optim.schedules import SCHEDULERS

    return SCHEDULERS.get("hold-decay")(cfg, step / steps_per_epoch, float(cfg.epochs))


def mode_seeking_loss(fake: torch.Tensor, z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """MSGAN's term over pairs (i, n + i), n = B - B//2: 1 / (mean |G(z₁) - G(z₂)| / mean |z₁ - z₂| + eps),
    small when different noise gives different images (each pair is of one class when conditional)."""
    half = len(z) // 2
    n = len(z) - half
    ratio = (fake[n:].float() - fake[:half].float()).abs().mean() / (z[n:] - z[:half]).abs().mean()
    return 1 / (ratio + eps)


def truncated_noise(m: int, dim: int, g: torch.Generator, device: torch.device, truncation: float) -> torch.Tensor:
    """(m, dim) standard normal noise; with truncation T > 0, every entry beyond ±T drawn again until
    none is (BigGAN's truncation trick: a normal truncated at T, from the same seeded stream)."""
    z = torch.randn(m, dim, device=device, generator=g)
    if truncation > 0:
        while (out := z.abs() > truncation).any():
            z[out] = torch.randn(int(out.sum()), device=device, generator=g)
    return z


@torch.no_grad()
def generate(G: torch.nn.Module, n: int, seed: int, device: torch.device, label: int | None = None,
             num_classes: int = 0, batch: int = 1000, shares: list[float] | None = None,
             truncation: float = 0.0) -> torch.Tensor:
    """`n` images in [0, 1] from a seeded noise stream: the same seed, the same images. A conditional
    generator draws `label`, else the classes in turn, or, given `shares` (a generator conditioned
    on clusters), classes drawn in those proportions. `truncation` > 0: noise from a normal
    truncated at ±truncation (see truncated_noise)."""
    g = torch.Generator(device=device).manual_seed(seed)
    out = []
    for i in range(0, n, batch):
        m = min(batch, n - i)
        z = truncated_noise(m, G.z_dim, g, device, truncation)
        y = draw_classes(m, i, num_classes, g, device, label, shares) if G.embed is not None else None
        out.append((G(z, y) + 1) / 2)
    return torch.cat(out).clamp(0, 1)


def _epoch_end(s: GenSession, epoch: int) -> dict[str, Any]:
    st = s.state
    sums, seen = s.take_sums()
    d_sum, g_sum = sums.get("d_loss", 0.0), sums.get("g_loss", 0.0)
    st.images_seen += seen
    row = {"epoch": epoch, "step": st.step, "d_loss": d_sum / max(seen, 1), "g_loss": g_sum / max(seen, 1),
           "seconds": round(st.elapsed, 2)}
    st.history.append(row)
    G = s.generator().eval()
    with torch.no_grad():
        save_grid((G(s.fixed["z"], s.fixed.get("y")) + 1) / 2, s.run / f"samples_epoch{epoch:03d}.png")
    quality_point(s, row, lambda n, seed: generate(G, n, seed, s.device, num_classes=s.info.num_classes,
                                                   shares=cluster_shares(s.meta), truncation=s.cfg.truncation))
    G.train()
    st.epoch, st.step_in_epoch = epoch + 1, 0
    s.save_net("G", RunFolder.GENERATOR)
    s.save_state()
    return row


def train_gan(cfg: GanConfig, runs_dir: str | Path = "runs", command: str = "", resume: str | Path | None = None,
              progress: Progress | None = None, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train a GAN; returns the run's summary (with the quality score when ``cfg.score``)."""
    relabel = cluster_relabel(cfg.clusters, cfg.seed) if cfg.clusters else None
    s = open_session(cfg, runs_dir, command, resume, progress, relabel)
    g = torch.Generator(device=s.device).manual_seed(cfg.seed + 12345)
    s.fixed = {"z": truncated_noise(cfg.samples, s.nets["G"].z_dim, g, s.device, cfg.truncation)}
    if cfg.conditional or cfg.clusters:  # each grid row one class (or cluster)
        s.fixed["y"] = (torch.arange(cfg.samples, device=s.device) // max(cfg.samples // s.info.num_classes, 1)
                        ).clamp_max(s.info.num_classes - 1)
    return run_session(s, gan_step, _epoch_end, _line, _finish, callbacks)


def _line(row: dict[str, Any]) -> str:
    return f"epoch {row['epoch']:>3}  D loss {row['d_loss']:.4f}  G loss {row['g_loss']:.4f}  [{row['seconds']:.1f}s]"


def _finish(s: GenSession) -> dict[str, Any]:
    cfg, st = s.cfg, s.state
    plot_losses(st.history, ["d_loss", "g_loss"], s.run / RunFolder.LOSSES, f"{cfg.model}, {cfg.loss} loss")
    summary: dict[str, Any] = {
        "run": s.run.name, "run_dir": str(s.run), "model": cfg.model, "loss": cfg.loss, "dataset": s.info.name,
        "seed": cfg.seed, "conditional": cfg.conditional, **cluster_summary(s.meta), "truncation": cfg.truncation,
        "epochs_run": st.history[-1]["epoch"],
        "steps": st.step, "train_seconds": round(st.elapsed, 2),
        "images_per_second": round(st.images_seen / max(st.step_time, 1e-9), 1), "stopped": st.stopped,
        "device": str(s.device), "params": {k: sum(p.numel() for p in v.parameters()) for k, v in s.nets.items()},
    }
    k = s.info.num_classes

    def draw(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:  # generate() draws the classes in turn
        images = generate(s.generator().eval(), n, seed, s.device, num_classes=k, shares=cluster_shares(s.meta),
                          truncation=cfg.truncation)
        return images, torch.arange(n) % k if cfg.conditional else None

    return finish_generator(s, f"{s.run.name}: {cfg.model} GAN on {s.info.name}", summary,
                            "Discriminator and generator loss per epoch", draw)


def sample(checkpoint: str | Path, n: int = 64, seed: int = 0, out: str | Path | None = None, label: int | None = None,
           device: str = "auto", score: bool = False, scorer: str | None = None, runs_dir: str | Path = "runs",
           nrow: int = 8, truncation: float | None = None) -> dict[str, Any]:
    """Write a grid of `n` samples from a trained generator (a run folder or generator.safetensors);
    with `score`, the quality figures of `n` samples too. `truncation`: the run's unless given."""
    from smallvision.engine.device import resolve_device
    from smallvision.generative.loop import load_net

    dev = resolve_device(device)
    G, meta = load_net(checkpoint, "G", dev)
    k = G.embed.num_embeddings if G.embed is not None else meta["dataset"]["num_classes"]
    what = "cluster" if meta.get("clusters") else "class"
    if label is not None and (G.embed is None or not 0 <= label < k):
        raise UsageError(f"--label needs a conditional generator and a {what} 0-{k - 1}" if G.embed is not None
                         else "--label needs a generator trained with --conditional or --clusters")
    if n < 1:
        raise UsageError(f"-n must be ≥ 1, got {n}")
    truncation = meta["config"].get("truncation", 0.0) if truncation is None else truncation
    check_truncation(truncation)
    images = generate(G, n, seed, dev, label, k, shares=cluster_shares(meta), truncation=truncation)
    path = Path(out) if out else Path(checkpoint if Path(checkpoint).is_dir() else Path(checkpoint).parent) / f"sample_seed{seed}.png"
    save_grid(images[: min(n, 400)], path, nrow=nrow)
    res: dict[str, Any] = {"grid": str(path), "samples": n, "seed": seed, "truncation": truncation}
    if score:
        from smallvision.generative.score import default_scorer, score_images

        cfg = meta["config"]
        judge = scorer or default_scorer(cfg["dataset"], cfg["data_args"], cfg["data_dir"], runs_dir, log=lambda m: None)
        res["score"] = score_images(images, judge, cfg["dataset"], cfg["data_args"], cfg["data_dir"], dev)
    return res
