"""What the GAN, autoencoder and diffusion loops share with each other and with the classifier engine: the
run folder (lock, config.json, phases), data on the device, exact resume, signals and the
report (its pictures: report/plots.py). Each loop (gan.py, autoencoder.py, diffusion.py) is then one small `step` and its end-of-epoch work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smallvision.data import TensorLoader, load_dataset
from smallvision.data.info import DatasetInfo
from smallvision.data.loader import training_subset
from smallvision.engine.callbacks import ProgressBar, StopOnSignal
from smallvision.engine.device import resolve_device, seed_everything
from smallvision.engine.progress import Progress
from smallvision.engine.run import LoopState, RunSession, default_run_name, epoch_loop, open_run, running
from smallvision.errors import DivergenceError, UsageError
from smallvision.generative.config import GenConfig, GeneratorSettings, from_record
from smallvision.generative.nets import GENERATIVE, create_generative, current_args
from smallvision.io import write_json
from smallvision.modelfile import load_checkpoint, save_checkpoint, versions
from smallvision.runfolder import RunFolder


@dataclass
class GenSession(RunSession):
    cfg: GenConfig
    run: RunFolder
    device: torch.device
    info: DatasetInfo
    loader: TensorLoader  # training images scaled to [-1, 1] (GAN, diffusion) or [0, 1] (autoencoder), labels
    test: tuple[torch.Tensor, torch.Tensor]  # the same for the test split
    nets: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    state: LoopState
    progress: Progress
    meta: dict[str, Any]
    ema: nn.Module | None = None  # GAN, diffusion: the generator's weight average (AveragedModel), when cfg.ema
    amp: Any = None  # the autocast context of cfg.precision
    fixed: dict[str, torch.Tensor] = field(default_factory=dict)  # fixed noise / images for the per-epoch pictures
    meter: dict[str, torch.Tensor] = field(default_factory=dict)  # this epoch's unsynced loss sums, by name
    t_start: float = 0.0
    step_clock: float | None = None
    judge: Any = None  # --score-every: score.Judge, loaded at the first point

    def save_state(self) -> None:
        from smallvision.engine.resume import save_resume

        self.sync()
        save_resume(self.run.path, self.modules(), self.optimizers, None, self.state.to_dict(), self.meta)

    def modules(self) -> dict[str, nn.Module]:
        """Everything with weights to save and restore: the networks and the generator average."""
        return {**self.nets, **({"G_ema": self.ema} if self.ema is not None else {})}

    def generator(self) -> nn.Module:
        """The generator we show, score and save: its weight average when there is one."""
        return self.ema.module if self.ema is not None else self.nets["G"]

    def begin_epoch(self, epoch: int) -> Any:
        for net in self.nets.values():
            net.train()
        self.meter = {}
        return self.loader.batches(epoch, self.state.step_in_epoch)

    def optimise(self, name: str, loss: torch.Tensor, averaged: nn.Module | None = None, what: str = "loss") -> None:
        """One update of the optimiser `name` on `loss`, then the generator's average follows
        `averaged` (when there is one). A loss that is no longer finite stops the run with a
        one-line error (checked on the CPU, where reading it costs nothing)."""
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if averaged is not None and self.ema is not None:
            self.ema.update_parameters(averaged)
        if self.device.type == "cpu" and not torch.isfinite(loss):
            raise DivergenceError(f"{what} became {loss.item()} at step {self.state.step + 1}; "
                                  f"try a lower --lr than {self.cfg.lr:g}")

    def save_net(self, name: str, filename: str) -> Path:
        """One network as a self-describing checkpoint (what `gan sample` / `autoencoder sample` load)."""
        path = self.run / filename
        net = self.generator() if name == "G" else self.nets[name]
        save_checkpoint(path, net.state_dict(), {**self.meta, "net": name, "epoch": self.state.epoch - 1})
        return path


def _images(x: torch.Tensor, kind: str, device: torch.device) -> torch.Tensor:
    x = x.to(device).float().div_(255)  # (N, C, H, W) in [0, 1]
    return x.mul_(2).sub_(1) if kind in ("gan", "diffusion") else x


Relabel = Callable[[torch.Tensor, torch.Tensor, DatasetInfo], tuple[torch.Tensor, DatasetInfo, dict[str, Any]]]


def open_session(cfg: GenConfig, runs_dir: str | Path, command: str, resume: str | Path | None,
                 progress: Progress | None = None, relabel: Relabel | None = None) -> GenSession:
    """Data, networks, Adam optimisers and the run folder: new, or restored from `resume`.
    `relabel(x, y, info)` -> (labels, info, what the checkpoints record) replaces the labels
    before the networks are built (the GAN's k-means clusters)."""
    cfg.validate()
    seed_everything(cfg.seed, False)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    data = load_dataset(cfg.dataset, cfg.data_dir, cfg.data_args)
    x, y = training_subset(data.train_x, data.train_y, cfg.train_limit, cfg.seed)
    info, recorded = data.info, {}
    if relabel is not None:  # new labels stand in for the data set's, from here to the samples
        y, info, recorded = relabel(x, y, info)
    if len(x) < cfg.batch_size:
        raise UsageError(f"--batch-size {cfg.batch_size} is larger than the training set ({len(x)} images)")
    torch.manual_seed(cfg.seed)
    args = {**cfg.model_args, **({"conditional": True} if getattr(cfg, "conditional", False) or relabel else {})}
    fmt = torch.channels_last if cfg.channels_last else torch.preserve_format  # for the convolutions' weights
    nets = {k: v.to(device, memory_format=fmt) for k, v in create_generative(cfg.model, info, cfg.kind, **args).items()}
    lrs = {"D": getattr(cfg, "d_lr", 0) or cfg.lr}  # a GAN's discriminator may have its own rate
    # fused Adam: one kernel for all of a network's parameters (the usual choice on CUDA; on 2 CPU
    # cores no measurable difference to a GAN step: 954 against 925 images/s, within the noise, 2026-12-05)
    fused = device.type in ("cpu", "cuda")
    optimizers = {f"optim_{k.lower()}": torch.optim.Adam(v.parameters(), lr=lrs.get(k, cfg.lr), betas=(cfg.beta1, 0.999),
                                                         fused=fused or None)
                  for k, v in nets.items()}
    loader = TensorLoader(_images(x, cfg.kind, device), y.to(device), cfg.batch_size, shuffle=True, seed=cfg.seed)
    test = (_images(data.test_x, cfg.kind, device), data.test_y.to(device))
    meta = {"kind": cfg.kind, "model": cfg.model, "model_args": resolved_args(cfg.model, args), "dataset": data.info.to_dict(),
            "config": cfg.to_dict(), "versions": versions(), **recorded}
    ema = None
    if isinstance(cfg, GeneratorSettings) and (cfg.ema or cfg.ema_rel):
        from torch.optim.swa_utils import AveragedModel

        ema = AveragedModel(nets["G"], multi_avg_fn=average_fn(cfg.kind, cfg.ema, cfg.ema_rel), use_buffers=True)
    modules = {**nets, **({"G_ema": ema} if ema is not None else {})}

    def restore() -> dict[str, Any]:
        from smallvision.engine.resume import load_resume
        from smallvision.engine.resume import restore as restore_state

        tensors, saved = load_resume(Path(resume))
        return restore_state(tensors, saved, modules, optimizers, None, device)

    run, state = open_run(runs_dir, default_run_name(cfg), resume, restore,
                          lambda r: r.write_config(cfg.to_dict(), {"device": str(device)}, command))
    from smallvision.engine.device import autocast_for

    s = GenSession(cfg, run, device, info, loader, test, nets, optimizers, state, progress or Progress(False), meta,
                   ema, autocast_for(device, cfg.precision)[0])
    s.t_start = time.perf_counter() - state.elapsed
    return s


def average_fn(kind: str, ema: float, ema_rel: float = 0.0) -> Callable[..., None]:
    """The update of the generator's average: the power-function one for ``--ema-rel σ``, else a
    fixed decay ``--ema d`` (warmed up for the flow, plain for the GANs' measured figures)."""
    return power_ema(ema_rel) if ema_rel else warmup_ema(ema, warmup=kind == "diffusion")


def _move_towards(ema_params: list[torch.Tensor], params: list[torch.Tensor], weight: float) -> None:
    """One averaging step over a group of AveragedModel's tensors (it groups them by dtype): float
    tensors move ``weight`` of the way to the model's; integer buffers (BatchNorm's step counter)
    are copied, since an average of a counter is not a counter."""
    if ema_params[0].is_floating_point():
        torch._foreach_lerp_(ema_params, params, weight)
    else:
        torch._foreach_copy_(ema_params, params)


def warmup_ema(decay: float, warmup: bool = True) -> Callable[..., None]:
    """An EMA whose decay grows as min(decay, (1 + n) / (10 + n)) with the n updates so far (the
    warm-up of TensorFlow's ExponentialMovingAverage and ema-pytorch): without it a 0.999 average
    is still 63 % the initial weights after 469 steps (one MNIST epoch), and a flow whose output
    layer starts at zero samples noise. ``warmup=False``: the plain fixed decay the GANs' figures
    were measured with (torch's own EMA on the float tensors; integer buffers such as BatchNorm's
    step counter are copied, where torch's would round them back to their first value)."""

    def update(ema_params: list[torch.Tensor], params: list[torch.Tensor], n: torch.Tensor | int) -> None:
        n = int(n)
        d = min(decay, (1 + n) / (10 + n)) if warmup else decay
        _move_towards(ema_params, params, 1 - d)

    return update


def power_ema(sigma_rel: float) -> Callable[..., None]:
    """The power-function EMA of Karras et al. 2024 (EDM2): after t steps the average weighs step
    τ as τ^γ, decay (1 - 1/t)^(γ+1) per step, γ chosen so the profile's width relative to t is
    `sigma_rel` (σ_rel² = (γ+1) / ((γ+2)²(γ+3)), the largest root of that cubic). Unlike a fixed
    decay it forgets the first weights at the same pace in a 1-minute and a 1-hour run."""
    import numpy as np

    roots = np.roots([1, 7, 16 - sigma_rel ** -2, 12 - sigma_rel ** -2])
    gamma = float(roots[np.isreal(roots)].real.max())

    def update(ema_params: list[torch.Tensor], params: list[torch.Tensor], n: torch.Tensor | int) -> None:
        t = int(n) + 1  # this update's step (the first, n = 0, is AveragedModel's copy)
        _move_towards(ema_params, params, 1 - (1 - 1 / t) ** (gamma + 1))

    return update


def saved_config(run_dir: str | Path) -> dict[str, Any]:
    """The settings of a generative run folder (for --resume), from its resume state."""
    from smallvision.engine.resume import load_resume

    meta = load_resume(Path(run_dir))[1]
    if meta.get("kind") not in ("gan", "autoencoder", "diffusion"):
        raise UsageError(f"{run_dir}: not a GAN, autoencoder or diffusion run")
    return from_record(meta["kind"], meta["config"], str(run_dir))


def resolved_args(model: str, given: dict[str, Any]) -> dict[str, Any]:
    """`given` plus every default of the model's builder, so that a checkpoint rebuilds the same
    network even after a later version changes a default."""
    import inspect

    sig = inspect.signature(GENERATIVE.entry(model).fn)  # follows __wrapped__ to the builder
    defaults = {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}
    return {**defaults, **given}


def load_net(checkpoint: str | Path, net: str, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a generator / autoencoder from its self-describing checkpoint (a run folder works too)."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / (RunFolder.GENERATOR if (path / RunFolder.GENERATOR).exists() else RunFolder.AUTOENCODER)
    if not path.is_file():
        raise UsageError(f"{checkpoint}: no such checkpoint or run folder")
    state, meta = load_checkpoint(path)
    if meta.get("net") != net:
        raise UsageError(f"{path}: holds {meta.get('net') or 'a classifier'}, not the {net} this command needs")
    info = DatasetInfo.from_dict(meta["dataset"])
    if meta.get("clusters"):
        from smallvision.generative.clusters import cluster_info

        info = cluster_info(info, meta["clusters"])
    args = current_args(meta["model"], dict(meta["model_args"]), str(path))
    if meta["model"] == "dcgan" and "sn" not in args:  # saved by dcgan version 1, before defaults were recorded
        args = {"extra": 0, "sn": False, **args}
    nets = create_generative(meta["model"], info, meta["kind"], **args)
    model = nets[net]
    model.load_state_dict(state)
    return model.to(device).eval(), meta


# ----------------------------------------------------------------------------- the loop (engine/run.py's)
def run_session(s: GenSession, step: Callable[..., None], epoch_end: Callable[[GenSession, int], dict[str, Any]],
                line: Callable[[dict[str, Any]], str], finish: Callable[[GenSession], dict[str, Any]],
                callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """The shared epoch loop of `step(s, xb, yb)` (unless a resumed run is past training), each
    epoch's row from `epoch_end` logged with `line`; then `finish`, inside the shared guard.
    `callbacks` (objects with any of engine/callbacks.py's hooks, as `fit()` takes them) see every
    step and epoch."""
    callbacks = [ProgressBar(), StopOnSignal(), *callbacks]
    with running(s, callbacks):
        if s.state.phase == "training":
            def end(s: GenSession, epoch: int) -> tuple[dict[str, Any], str]:
                row = epoch_end(s, epoch)
                return row, line(row)

            epoch_loop(s, step, end, callbacks)
            s.enter_phase("trained")
        return finish(s)


CURVE_SAMPLES = 1000  # samples per point of the quality-vs-time curve


def quality_point(s: GenSession, row: dict[str, Any], draw: Callable[[int, int], torch.Tensor]) -> None:
    """--score-every: the quick score of `draw(n, seed)`'s samples into this epoch's `row` when the
    last point is at least cfg.score_every seconds of training back; the time it takes (the
    scorer's training too, the first time) is taken off the training clock."""
    cfg = s.cfg
    if not (cfg.score_every and cfg.score):
        return
    last = max((h["seconds"] for h in s.state.history if "inception_score" in h), default=None)
    if last is not None and row["seconds"] - last < cfg.score_every:
        return
    t0 = time.perf_counter()
    if s.judge is None:
        from smallvision.generative.score import Judge, default_scorer

        scorer = cfg.scorer or default_scorer(cfg.dataset, cfg.data_args, cfg.data_dir, s.run.path.parent,
                                              log=s.progress.log)
        s.judge = Judge(scorer, cfg.dataset, cfg.data_args, cfg.data_dir, s.device)
    row.update(s.judge.quick(draw(CURVE_SAMPLES, cfg.seed + 999)))
    s.t_start += time.perf_counter() - t0


# ----------------------------------------------------------------------------- the end of a generator's run
def finish_generator(s: GenSession, title: str, summary: dict[str, Any], loss_caption: str,
                     draw: Callable[[int, int], tuple[torch.Tensor, torch.Tensor | None]], grid_note: str = ""
                     ) -> dict[str, Any]:
    """What the GAN and the flow model do after training (their loss plot is drawn already): the
    GIF of the per-epoch grids, the score of cfg.score_samples samples from `draw(n, seed)`
    (images in [0, 1] and the class each was asked for, or None), the quality-vs-time curve and
    the report; the phases ``tested`` and ``reported``."""
    from smallvision.generative.score import default_scorer, score_images, score_rows
    from smallvision.report.plots import plot_quality, save_gif

    cfg, st = s.cfg, s.state
    frames = sorted(s.run.path.glob("samples_epoch*.png"))
    if cfg.gif:
        save_gif(frames, s.run / RunFolder.SAMPLES_GIF)
    if cfg.score:
        scorer = cfg.scorer or default_scorer(cfg.dataset, cfg.data_args, cfg.data_dir, s.run.path.parent,
                                              log=s.progress.log)
        t0 = time.perf_counter()
        images, asked = draw(cfg.score_samples, cfg.seed)
        summary["sampling_seconds"] = round(time.perf_counter() - t0, 2)
        summary["score"] = score_images(images, scorer, cfg.dataset, cfg.data_args, cfg.data_dir, s.device, asked=asked)
    if st.phase == "trained":
        s.enter_phase("tested")
    figures = [(frames[-1].name, f"Fixed-noise samples after epoch {st.history[-1]['epoch']}{grid_note}"),
               (RunFolder.LOSSES, loss_caption)]
    if cfg.gif:
        figures.append((RunFolder.SAMPLES_GIF, "The fixed-noise samples, epoch by epoch"))
    if any("inception_score" in h for h in st.history):
        plot_quality(st.history, s.run / RunFolder.QUALITY, f"{cfg.model}: {CURVE_SAMPLES} samples scored during training")
        figures.append((RunFolder.QUALITY, "Quality against training time (--score-every)"))
    keys = list(dict.fromkeys(k for h in st.history for k in h))  # scored epochs have more columns (--score-every)
    tables = [("Losses per epoch", [{k: h.get(k) for k in keys} for h in st.history])]
    if "score" in summary:
        tables.insert(0, ("Quality (scored by a smallvision classifier)", score_rows(summary["score"])))
    write_gen_report(s, title, summary, figures, tables)
    s.enter_phase("reported")
    return summary


# ----------------------------------------------------------------------------- report
def write_gen_report(s: GenSession, title: str, summary: dict[str, Any], figures: list[tuple[str, str]],
                     tables: list[tuple[str, list[dict[str, Any]]]]) -> None:
    """summary.json and report.{html,md,json}, as classifier runs have them."""
    from smallvision.report.build import environment, render

    write_json(s.run / RunFolder.SUMMARY, summary)
    if not s.cfg.report:
        return
    head = [{"item": k.replace("_", " "), "value": str(v)} for k, v in summary.items() if not isinstance(v, dict)]
    env = environment(str(s.device))
    cmd = f"smallvision {s.cfg.kind} train --config {s.run / RunFolder.CONFIG}"
    write_json(s.run / RunFolder.REPORT_JSON, {"title": title, "summary": summary, "history": s.state.history,
                                       "environment": env, "config": s.cfg.to_dict(), "reproduce": cmd,
                                       "figures": [f for f, _ in figures]})
    render(s.run.path, title, head, figures, tables, env, cmd)
