"""`smallvision gan train|sample`: the GAN loop (pytorch/examples' dcgan shape) and sampling.

Per step: one discriminator update on a real and a generated batch (plus the gradient penalty for
WGAN-GP), then, every ``d_steps`` steps, one generator update through the updated discriminator.
Per epoch: a grid of the same fixed noise (so the frames of the GIF are comparable), the loss
row, ``generator.safetensors`` and the resume state. At the end: the loss curves, the GIF, the
quality score (score.py) and the report.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from smallvision.engine.progress import Progress
from smallvision.engine.run import RunFolder
from smallvision.errors import DivergenceError, UsageError
from smallvision.generative.clusters import cluster_relabel, cluster_shares, cluster_summary, draw_classes
from smallvision.generative.config import GenConfig, check_truncation
from smallvision.generative.loop import (
    GenSession,
    finish_generator,
    open_session,
    quality_point,
    run_session,
)
from smallvision.generative.losses import GAN_LOSSES, gradient_penalty
from smallvision.generative.selection import selection_summary
from smallvision.report.plots import plot_losses, save_grid


def _noise(n: int, s: GenSession, g: torch.Generator | None = None) -> torch.Tensor:
    return torch.randn(n, s.nets["G"].z_dim, device=s.device, generator=g)


def diff_augment(x: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """DiffAugment (Zhao et al. 2020): the same kind of random, differentiable change to every
    image the discriminator sees, real or generated, so D cannot memorise the training set and
    G's gradient passes through. ``translation``: a shift of up to 1/8 of the side, the border
    black; ``cutout``: a black square of half the side at a random place. Images in [-1, 1]."""
    n, _, h, w = x.shape
    if "translation" in policy:
        dy, dx = (torch.randint(-(h // 8), h // 8 + 1, (n,), device=x.device),
                  torch.randint(-(w // 8), w // 8 + 1, (n,), device=x.device))
        rows = (torch.arange(h, device=x.device).view(1, h) - dy.view(n, 1))  # source row of each output row
        cols = (torch.arange(w, device=x.device).view(1, w) - dx.view(n, 1))
        inside = ((rows >= 0) & (rows < h)).view(n, 1, h, 1) & ((cols >= 0) & (cols < w)).view(n, 1, 1, w)
        x = x.gather(2, rows.clamp(0, h - 1).view(n, 1, h, 1).expand(-1, x.shape[1], -1, w))
        x = x.gather(3, cols.clamp(0, w - 1).view(n, 1, 1, w).expand(-1, x.shape[1], h, -1))
        x = torch.where(inside, x, torch.full_like(x, -1.0))
    if "cutout" in policy:
        cy, cx = torch.randint(0, h, (n, 1, 1), device=x.device), torch.randint(0, w, (n, 1, 1), device=x.device)
        ys, xs = torch.arange(h, device=x.device).view(1, h, 1), torch.arange(w, device=x.device).view(1, 1, w)
        hole = ((ys - cy).abs() <= h // 4) & ((xs - cx).abs() <= w // 4)
        x = torch.where(hole.unsqueeze(1), torch.full_like(x, -1.0), x)
    return x


def gan_step(s: GenSession, xb: torch.Tensor, yb: torch.Tensor) -> None:
    """One discriminator update, then (every d_steps) one generator update; loss sums into s.meter."""
    G, D, cfg = s.nets["G"], s.nets["D"], s.cfg
    loss_fn = GAN_LOSSES.get(cfg.loss)
    aux = cfg.aux_weight > 0  # AC-GAN: D also names the class of real and generated images
    z, yf = _noise(len(xb), s), yb  # the generated batch's noise and classes
    if cfg.mode_seeking:  # pairs (i, n + i): the same class, different noise
        half = len(xb) // 2
        yf = torch.cat([yb[: len(xb) - half], yb[:half]])
    yr, yg = (yb, yf) if cfg.conditional or cfg.clusters else (None, None)  # what D and G are told
    if cfg.lr_decay:
        scale = lr_scale(s)
        for name, base in (("optim_d", cfg.d_lr or cfg.lr), ("optim_g", cfg.lr)):
            for group in s.optimizers[name].param_groups:
                group["lr"] = base * scale
    policy = tuple(p for p in cfg.diff_augment.split(",") if p)
    aug = (lambda x: diff_augment(x, policy)) if policy else (lambda x: x)
    with s.amp:  # the networks in the run's precision, the losses in fp32
        fake = G(z, yg)  # (B, C, H, W) in [-1, 1]
        d_real, d_fake, c_real, c_fake = _judge_both(D, aug(xb), aug(fake.detach()), yr, yg, aux)
    d_real, d_fake = d_real.float(), d_fake.float()
    d_loss = loss_fn(d_real, d_fake, False)
    if aux:
        aux_d = F.cross_entropy(c_real.float(), yb)
        if cfg.aux_on_fakes:
            aux_d = aux_d + F.cross_entropy(c_fake.float(), yf)
        d_loss = d_loss + cfg.aux_weight * aux_d
    if GAN_LOSSES.entry(cfg.loss).contract.gradient_penalty:
        d_loss = d_loss + cfg.gp_weight * gradient_penalty(D, xb, fake.detach(), yr)
    s.optimizers["optim_d"].zero_grad(set_to_none=True)
    d_loss.backward()
    s.optimizers["optim_d"].step()
    if s.state.step % cfg.d_steps == 0:
        D.requires_grad_(False)  # G's step needs D's input gradient only, not its weights' (discarded anyway)
        with s.amp:
            out = D(aug(fake), yg, with_classes=aux)
        D.requires_grad_(True)
        d_gen, c_gen = out if aux else (out, None)
        d_gen = d_gen.float()
        if cfg.top_k < 1:  # only the fakes D finds most real teach G
            d_gen = d_gen.topk(max(1, round(len(d_gen) * top_k_share(s)))).values
        g_loss = loss_fn(None, d_gen, True)
        if cfg.mode_seeking:
            g_loss = g_loss + cfg.mode_seeking * mode_seeking_loss(fake, z)
        if c_gen is not None:
            g_loss = g_loss + cfg.aux_weight * F.cross_entropy(c_gen.float(), yf)
        if cfg.ortho:
            g_loss = g_loss + cfg.ortho * filter_similarity(G)
        s.optimizers["optim_g"].zero_grad(set_to_none=True)
        g_loss.backward()
        s.optimizers["optim_g"].step()
        if s.ema is not None:
            s.ema.update_parameters(G)
        s.add("g_loss", g_loss.detach() * len(xb))
    if s.device.type == "cpu" and not torch.isfinite(d_loss):
        raise DivergenceError(f"discriminator loss became {d_loss.item()} at step {s.state.step + 1}; "
                              f"try a lower --lr than {cfg.lr:g}")
    s.add("d_loss", d_loss.detach() * len(xb))


def filter_similarity(G: torch.nn.Module) -> torch.Tensor:
    """Orthogonal regularisation's penalty (Brock et al. 2019), scale-free: for each linear or
    convolution layer of G, the squared cosine similarity of every two of its filters (its weight's
    rows; its columns when there are fewer of them, as for the noise's first layer, where rows
    cannot all be orthogonal), summed. 0 when every layer's filters are orthogonal; random
    filters give about rows²/columns."""
    terms = []
    for m in G.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            w = m.weight.float().flatten(1)
            w = F.normalize(w.t() if w.shape[0] > w.shape[1] else w, dim=1)
            gram = w @ w.t()
            terms.append((gram - torch.eye(len(gram), device=gram.device)).pow(2).sum())
    return torch.stack(terms).sum()


def _judge_both(D: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor, yr: torch.Tensor | None,
                yg: torch.Tensor | None, aux: bool) -> tuple[torch.Tensor, ...]:
    """D's scores (and, for AC-GAN, class logits) of the real and the generated batch. When D scores
    each image on its own (no BatchNorm, no minibatch std), one call on both batches stacked: the
    same scores, a few % faster a step on 2 cores than two calls (954 against 925 images/s,
    benchmarks/results/gan-step.md, within that machine's noise). Otherwise two calls, so that
    batch statistics stay per batch, as the loss was written for."""
    if per_image(D):
        y = torch.cat([yr, yg]) if yr is not None and yg is not None else None
        out = D(torch.cat([real, fake]), y, with_classes=aux)
        score, classes = out if aux else (out, None)
        n = len(real)
        return score[:n], score[n:], *((classes[:n], classes[n:]) if classes is not None else (None, None))
    (d_real, c_real), (d_fake, c_fake) = ((D(real, yr, with_classes=True), D(fake, yg, with_classes=True)) if aux
                                          else ((D(real, yr), None), (D(fake, yg), None)))
    return d_real, d_fake, c_real, c_fake


def per_image(D: torch.nn.Module) -> bool:
    """Whether D's score of an image depends on that image alone (not on the rest of its batch)."""
    return getattr(D, "std_out", None) is None and not any(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in D.modules())


def run_done(s: GenSession) -> float:
    """How far through its run training is, 0 to 1: the steps taken over the steps the run will
    take. That is --epochs' worth, or, with --max-time, up to the end of the epoch in which the
    clock will pass it (training stops only at an epoch's end), at the pace so far."""
    cfg, st = s.cfg, s.state
    per_epoch = max(len(s.loader), 1)
    step = (st.epoch - 1) * per_epoch + st.step_in_epoch
    total = cfg.epochs * per_epoch
    if cfg.max_time and step:
        elapsed = time.perf_counter() - s.t_start
        pace = elapsed / step  # seconds a step, over the whole run so far
        epoch_began = elapsed - st.step_in_epoch * pace
        epochs_left = max(1, math.ceil((cfg.max_time - epoch_began) / (per_epoch * pace)))
        total = min(total, (st.epoch - 1 + epochs_left) * per_epoch)
    return min(step / total, 1.0)


def top_k_share(s: GenSession) -> float:
    """Top-k training's share of the batch at this point of the run: 1 at the start, falling
    linearly to ``cfg.top_k`` at the end (run_done)."""
    return 1 - (1 - s.cfg.top_k) * run_done(s)


def lr_scale(s: GenSession) -> float:
    """--lr-decay F: the learning rates' factor, 1 until the last F of the run, then falling
    linearly to 0 at its end."""
    f = s.cfg.lr_decay
    return min(1.0, (1 - run_done(s)) / f) if f else 1.0


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
    row = {"epoch": epoch, "step": st.step, "d_loss": d_sum / max(seen, 1), "g_loss": g_sum / max(seen, 1) * s.cfg.d_steps,
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


def train_gan(cfg: GenConfig, runs_dir: str | Path = "runs", command: str = "", resume: str | Path | None = None,
              progress: Progress | None = None) -> dict[str, Any]:
    """Train a GAN; returns the run's summary (with the quality score when ``cfg.score``)."""
    relabel = cluster_relabel(cfg.clusters, cfg.seed) if cfg.clusters else None
    s = open_session(cfg, runs_dir, command, resume, progress, relabel)
    g = torch.Generator(device=s.device).manual_seed(cfg.seed + 12345)
    s.fixed = {"z": truncated_noise(cfg.samples, s.nets["G"].z_dim, g, s.device, cfg.truncation)}
    if cfg.conditional or cfg.clusters:  # each grid row one class (or cluster)
        s.fixed["y"] = (torch.arange(cfg.samples, device=s.device) // max(cfg.samples // s.info.num_classes, 1)
                        ).clamp_max(s.info.num_classes - 1)
    return run_session(s, gan_step, _epoch_end, _line, _finish)


def _line(row: dict[str, Any]) -> str:
    return f"epoch {row['epoch']:>3}  D loss {row['d_loss']:.4f}  G loss {row['g_loss']:.4f}  [{row['seconds']:.1f}s]"


def _finish(s: GenSession) -> dict[str, Any]:
    cfg, st = s.cfg, s.state
    plot_losses(st.history, ["d_loss", "g_loss"], s.run / RunFolder.LOSSES, f"{cfg.model}, {cfg.loss} loss")
    summary: dict[str, Any] = {
        "run": s.run.name, "run_dir": str(s.run), "model": cfg.model, "loss": cfg.loss, "dataset": s.info.name,
        "seed": cfg.seed, "conditional": cfg.conditional, **cluster_summary(s.meta), **selection_summary(s.meta), "truncation": cfg.truncation,
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
