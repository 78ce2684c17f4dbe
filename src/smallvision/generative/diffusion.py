"""`smallvision diffusion train|sample`: a small flow-matching model (rectified flow, Liu et al. 2022;
Lipman et al. 2022) and its few-step sampler.

Training: an image x₁ (scaled to [-1, 1]), Gaussian noise x₀ and a time t ~ U(0, 1) give the point
x_t = (1 - t)·x₀ + t·x₁ on the straight path between them; the U-Net (nets.py: unet) learns the
path's velocity x₁ - x₀ by mean squared error. Sampling integrates dx/dt = v(x, t) from noise at
t = 0 to an image at t = 1 with ``--steps`` Euler or Heun steps (straight paths are what makes a
few steps enough, where DDPM's ancestral sampler takes ~1 000). With ``--conditional`` the class
is given, except to a ``--cond-drop`` share of the training images, so one network learns both the
conditional and the unconditional velocity and sampling can mix them (classifier-free guidance,
Ho & Salimans 2022: ``--guidance w``). With ``--clusters K`` no label is read: k-means clusters of
the training pixels stand in for the classes (clusters.py, as for the GAN), samples draw the
clusters in their training shares, and guidance towards a cluster is self-guidance (Hu et al. 2023,
"Self-Guided Diffusion Models"): an unconditional data set, a guided sampler.

The noise and times of step k come from a generator seeded by (seed, k): a resumed run draws what
the uninterrupted one drew. Per epoch: a grid of the same fixed noise, the loss row,
``generator.safetensors`` (the EMA weights) and the resume state; at the end: the loss curve, the
GIF, the quality score (score.py, as for the GANs) and the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from smallvision.engine.progress import Progress
from smallvision.errors import UsageError
from smallvision.generative.clusters import cluster_relabel, cluster_shares, cluster_summary, draw_classes
from smallvision.generative.config import FlowConfig
from smallvision.generative.loop import GenSession, finish_generator, load_net, open_session, quality_point, run_session
from smallvision.report.plots import plot_losses, save_grid
from smallvision.runfolder import RunFolder


def flow_step(s: GenSession, xb: torch.Tensor, yb: torch.Tensor) -> None:
    """One optimiser step on the velocity error at random points of the noise-to-image paths."""
    net, cfg = s.nets["G"], s.cfg
    g = torch.Generator(device=s.device).manual_seed(cfg.seed * 1_000_003 + s.state.step)
    noise = torch.randn(xb.shape, generator=g, device=s.device)
    if cfg.time_sampling == "logit-normal":
        t = torch.sigmoid(torch.randn(len(xb), generator=g, device=s.device))
    else:
        t = torch.rand(len(xb), generator=g, device=s.device)
    y = None
    if cfg.conditional or cfg.clusters:  # a cond_drop share sees the "no class" code: the unconditional velocity, for guidance
        drop = torch.rand(len(xb), generator=g, device=s.device) < cfg.cond_drop
        y = torch.where(drop, torch.full_like(yb, net.num_classes), yb)
    tt = t.view(-1, 1, 1, 1)
    with s.amp:
        v = net((1 - tt) * noise + tt * xb, t, y)
    loss = F.mse_loss(v.float(), xb - noise)
    s.optimise("optim_g", loss, averaged=net)
    s.add("loss", loss.detach() * len(xb))


def velocity(net: torch.nn.Module, x: torch.Tensor, t: float, y: torch.Tensor | None, guidance: float) -> torch.Tensor:
    """v(x, t[, y]); with guidance w ≠ 1, v(∅) + w·(v(y) - v(∅)) from one batched call."""
    tt = torch.full((len(x),), t, device=x.device)
    if y is None or guidance == 1:
        return net(x, tt, y)
    null = torch.full_like(y, net.num_classes)
    v_cond, v_free = net(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([y, null])).chunk(2)
    return v_free + guidance * (v_cond - v_free)


def integrate(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None, steps: int, sampler: str,
              guidance: float = 1.0) -> torch.Tensor:
    """Noise x at t = 0 carried to t = 1 in `steps` equal steps (Heun: Euler's guess, then the mean
    of the two ends' velocities; the last step stays Euler)."""
    ts = torch.linspace(0, 1, steps + 1).tolist()
    for i in range(steps):
        t0, t1 = ts[i], ts[i + 1]
        v = velocity(net, x, t0, y, guidance)
        if sampler == "heun" and i < steps - 1:
            v = (v + velocity(net, x + (t1 - t0) * v, t1, y, guidance)) / 2
        x = x + (t1 - t0) * v
    return x


def evaluations(steps: int, sampler: str) -> int:
    """Network calls per sample (guidance doubles each call's batch, not the calls)."""
    return 2 * steps - 1 if sampler == "heun" else steps


@torch.no_grad()
def generate(net: torch.nn.Module, n: int, seed: int, device: torch.device, steps: int, sampler: str,
             label: int | None = None, guidance: float = 1.0, batch: int = 500, shares: list[float] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`n` images in [0, 1] from a seeded noise stream (the same seed, the same images) and, for a
    conditional model, the class each was asked for (`label`, else the classes in turn). Given
    `shares` (a model conditioned on clusters), clusters drawn in those proportions, and no class
    asked for (a cluster is not a class)."""
    g = torch.Generator(device=device).manual_seed(seed)
    out, asked = [], []
    for i in range(0, n, batch):
        m = min(batch, n - i)
        x = torch.randn(m, *net.image_shape, generator=g, device=device)
        y = None
        if net.embed is not None:
            y = draw_classes(m, i, net.num_classes, g, device, label, shares)
            if shares is None:
                asked.append(y.cpu())
        out.append((integrate(net, x, y, steps, sampler, guidance) + 1) / 2)
    return torch.cat(out).clamp(0, 1), (torch.cat(asked) if asked else None)


def _epoch_end(s: GenSession, epoch: int) -> dict[str, Any]:
    st, cfg = s.state, s.cfg
    sums, seen = s.take_sums()
    loss_sum = sums.get("loss", 0.0)
    st.images_seen += seen
    row = {"epoch": epoch, "step": st.step, "loss": loss_sum / max(seen, 1), "seconds": round(st.elapsed, 2)}
    st.history.append(row)
    net = s.generator().eval()
    with torch.no_grad():
        x = integrate(net, s.fixed["z"], s.fixed.get("y"), cfg.steps, cfg.sampler, cfg.guidance)
    save_grid(((x + 1) / 2).clamp(0, 1), s.run / f"samples_epoch{epoch:03d}.png")
    quality_point(s, row, lambda n, seed: generate(net, n, seed, s.device, cfg.steps, cfg.sampler,
                                                   guidance=cfg.guidance, shares=cluster_shares(s.meta))[0])
    net.train()
    st.epoch, st.step_in_epoch = epoch + 1, 0
    s.save_net("G", RunFolder.GENERATOR)
    s.save_state()
    return row


def _line(row: dict[str, Any]) -> str:
    return f"epoch {row['epoch']:>3}  velocity loss {row['loss']:.4f}  [{row['seconds']:.1f}s]"


def train_diffusion(cfg: FlowConfig, runs_dir: str | Path = "runs", command: str = "", resume: str | Path | None = None,
                    progress: Progress | None = None, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train a flow-matching model; returns the run's summary (with the quality score when ``cfg.score``)."""
    # Subnormal floats appear in the backward pass of the smallest maps (8×8 digits: 1×1 at the
    # bottom) and make an x86 CPU ~30× slower per step (measured: 600 -> 20 ms); flushed to zero,
    # nothing visible changes. Process-wide, as torch offers it.
    torch.set_flush_denormal(True)
    relabel = cluster_relabel(cfg.clusters, cfg.seed) if cfg.clusters else None
    s = open_session(cfg, runs_dir, command, resume, progress, relabel)
    g = torch.Generator(device=s.device).manual_seed(cfg.seed + 12345)
    s.fixed = {"z": torch.randn(cfg.samples, *s.nets["G"].image_shape, generator=g, device=s.device)}
    if cfg.conditional or cfg.clusters:  # each grid row one class (or cluster)
        s.fixed["y"] = (torch.arange(cfg.samples, device=s.device) // max(cfg.samples // s.info.num_classes, 1)
                        ).clamp_max(s.info.num_classes - 1)
    return run_session(s, flow_step, _epoch_end, _line, _finish, callbacks)


def _finish(s: GenSession) -> dict[str, Any]:
    cfg, st = s.cfg, s.state
    plot_losses(st.history, ["loss"], s.run / RunFolder.LOSSES, f"{cfg.model}, velocity loss (flow matching)")
    summary: dict[str, Any] = {
        "run": s.run.name, "run_dir": str(s.run), "model": cfg.model, "dataset": s.info.name, "seed": cfg.seed,
        "conditional": cfg.conditional, **cluster_summary(s.meta), "sampler": cfg.sampler, "steps": cfg.steps,
        "evaluations_per_sample": evaluations(cfg.steps, cfg.sampler), "guidance": cfg.guidance,
        "time_sampling": cfg.time_sampling,
        "epochs_run": st.history[-1]["epoch"], "train_steps": st.step, "train_seconds": round(st.elapsed, 2),
        "images_per_second": round(st.images_seen / max(st.step_time, 1e-9), 1), "stopped": st.stopped,
        "device": str(s.device), "params": {k: sum(p.numel() for p in v.parameters()) for k, v in s.nets.items()},
    }

    def draw(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        return generate(s.generator().eval(), n, seed, s.device, cfg.steps, cfg.sampler, guidance=cfg.guidance,
                        shares=cluster_shares(s.meta))

    return finish_generator(s, f"{s.run.name}: {cfg.model} flow matching on {s.info.name}", summary,
                            "Velocity loss per epoch", draw, f" ({cfg.steps} {cfg.sampler} steps)")


def sample(checkpoint: str | Path, n: int = 64, seed: int = 0, out: str | Path | None = None, label: int | None = None,
           device: str = "auto", steps: int | None = None, sampler: str | None = None, guidance: float | None = None,
           score: bool = False, scorer: str | None = None, runs_dir: str | Path = "runs", nrow: int = 8) -> dict[str, Any]:
    """A grid of `n` samples from a trained flow model (a run folder or its generator.safetensors),
    with the run's own steps, sampler and guidance unless given; with `score`, their quality too."""
    from smallvision.engine.device import resolve_device

    dev = resolve_device(device)
    net, meta = load_net(checkpoint, "G", dev)
    if meta.get("kind") != "diffusion":
        raise UsageError(f"{checkpoint}: a {meta.get('kind')} generator; `smallvision {meta.get('kind')} sample` draws it")
    cfg = meta["config"]
    steps, sampler = steps or cfg["steps"], sampler or cfg["sampler"]
    guidance = cfg["guidance"] if guidance is None else guidance
    what = "cluster" if meta.get("clusters") else "class"
    if label is not None and (net.embed is None or not 0 <= label < net.num_classes):
        raise UsageError(f"--label needs a {what} 0-{net.num_classes - 1}" if net.embed is not None
                         else "--label needs a model trained with --conditional or --clusters")
    if guidance != 1 and net.embed is None:
        raise UsageError("--guidance needs a model trained with --conditional or --clusters")
    if n < 1 or steps < 1 or sampler not in ("euler", "heun"):
        raise UsageError(f"need -n ≥ 1, --steps ≥ 1 and --sampler euler or heun (got {n}, {steps}, {sampler})")
    images, asked = generate(net, n, seed, dev, steps, sampler, label, guidance, shares=cluster_shares(meta))
    path = Path(out) if out else Path(checkpoint if Path(checkpoint).is_dir() else Path(checkpoint).parent) / f"sample_seed{seed}.png"
    save_grid(images[: min(n, 400)], path, nrow=nrow)
    res: dict[str, Any] = {"grid": str(path), "samples": n, "seed": seed, "steps": steps, "sampler": sampler,
                           "evaluations_per_sample": evaluations(steps, sampler), "guidance": guidance}
    if score:
        from smallvision.generative.score import default_scorer, score_images

        judge = scorer or default_scorer(cfg["dataset"], cfg["data_args"], cfg["data_dir"], runs_dir, log=lambda m: None)
        res["score"] = score_images(images, judge, cfg["dataset"], cfg["data_args"], cfg["data_dir"], dev, asked=asked)
    return res
