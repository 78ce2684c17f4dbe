"""What the GAN, autoencoder and diffusion loops share with each other and with the classifier engine: the
run folder (lock, config.json, phases), data on the device, exact resume, signals and the
report (its pictures: report/plots.py). Each loop (gan.py, autoencoder.py, diffusion.py) is then one small `step` and its end-of-epoch work.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smallvision.data import TensorLoader, load_dataset
from smallvision.data.info import DatasetInfo
from smallvision.data.loader import training_subset
from smallvision.engine.callbacks import ProgressBar, StopOnSignal, call
from smallvision.engine.checkpoint import load_checkpoint, save_checkpoint, versions
from smallvision.engine.device import resolve_device, seed_everything
from smallvision.engine.progress import Progress
from smallvision.engine.run import Counted, LoopState, RunFolder, crash_point
from smallvision.errors import UsageError
from smallvision.generative.config import GenConfig
from smallvision.generative.nets import GENERATIVE, create_generative
from smallvision.io import write_json


@dataclass
class GenSession(Counted):
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
    meter: list[torch.Tensor] = field(default_factory=list)  # this epoch's unsynced loss sums, added to state.acc[:2]
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

    def enter_phase(self, phase: str) -> None:
        self.state.phase = phase
        self.save_state()
        crash_point(phase)

    def save_net(self, name: str, filename: str) -> Path:
        """One network as a self-describing checkpoint (what `gan sample` / `autoencoder sample` load)."""
        path = self.run / filename
        net = self.generator() if name == "G" else self.nets[name]
        save_checkpoint(path, net.state_dict(), {**self.meta, "net": name, "epoch": self.state.epoch - 1})
        return path


def _images(x: torch.Tensor, kind: str, device: torch.device) -> torch.Tensor:
    x = x.to(device).float().div_(255)  # (N, C, H, W) in [0, 1]
    return x.mul_(2).sub_(1) if kind in ("gan", "diffusion") else x


def open_session(cfg: GenConfig, runs_dir: str | Path, command: str, resume: str | Path | None,
                 progress: Progress | None = None) -> GenSession:
    """Data, networks, Adam optimisers and the run folder: new, or restored from `resume`."""
    cfg.validate()
    seed_everything(cfg.seed, False)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    data = load_dataset(cfg.dataset, cfg.data_dir, cfg.data_args)
    x, y = training_subset(data.train_x, data.train_y, cfg.train_limit, cfg.seed)
    if len(x) < cfg.batch_size:
        raise UsageError(f"--batch-size {cfg.batch_size} is larger than the training set ({len(x)} images)")
    info, clusters = data.info, None
    if cfg.kind == "gan" and cfg.clusters:  # the cluster ids stand in for the labels, from here to the samples
        y, clusters = cluster_labels(x, cfg.clusters, cfg.seed)
        info = _cluster_info(info, clusters)
    torch.manual_seed(cfg.seed)
    args = {**cfg.model_args, **({"conditional": True} if cfg.conditional or clusters else {}),
            **({"aux_classes": True} if cfg.kind == "gan" and cfg.aux_weight > 0 else {})}
    nets = {k: v.to(device) for k, v in create_generative(cfg.model, info, cfg.kind, **args).items()}
    lrs = {"D": cfg.d_lr or cfg.lr}
    optimizers = {f"optim_{k.lower()}": torch.optim.Adam(v.parameters(), lr=lrs.get(k, cfg.lr), betas=(cfg.beta1, 0.999))
                  for k, v in nets.items()}
    loader = TensorLoader(_images(x, cfg.kind, device), y.to(device), cfg.batch_size, shuffle=True, seed=cfg.seed)
    test = (_images(data.test_x, cfg.kind, device), data.test_y.to(device))
    meta = {"kind": cfg.kind, "model": cfg.model, "model_args": resolved_args(cfg.model, args), "dataset": data.info.to_dict(),
            "config": cfg.to_dict(), "versions": versions(), **({"clusters": clusters} if clusters else {})}
    ema = None
    if cfg.kind in ("gan", "diffusion") and cfg.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        avg = warmup_ema(cfg.ema) if cfg.kind == "diffusion" else get_ema_multi_avg_fn(cfg.ema)
        ema = AveragedModel(nets["G"], multi_avg_fn=avg, use_buffers=True)
    state = LoopState()
    if resume is None:
        base = cfg.name or f"{cfg.dataset.split(':')[0]}-{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"
        run = RunFolder.create(runs_dir, base)
        run.write_config(cfg.to_dict(), {"device": str(device)}, command)
    else:
        run, state = _restore(Path(resume), cfg, {**nets, **({"G_ema": ema} if ema is not None else {})}, optimizers,
                              device)
    from smallvision.engine.device import autocast_for

    s = GenSession(cfg, run, device, info, loader, test, nets, optimizers, state, progress or Progress(False), meta,
                   ema, autocast_for(device, cfg.precision)[0])
    s.t_start = time.perf_counter() - state.elapsed
    return s


def warmup_ema(decay: float) -> Callable[..., None]:
    """An EMA whose decay grows as min(decay, (1 + n) / (10 + n)) with the n updates so far (the
    warm-up of TensorFlow's ExponentialMovingAverage and ema-pytorch): without it a 0.999 average
    is still 63 % the initial weights after 469 steps (one MNIST epoch), and a flow whose output
    layer starts at zero samples noise. The GANs keep the plain EMA their figures were measured with."""

    def update(ema_params: list[torch.Tensor], params: list[torch.Tensor], n: torch.Tensor | int) -> None:
        n = int(n)
        d = min(decay, (1 + n) / (10 + n))
        torch._foreach_lerp_(ema_params, params, 1 - d)

    return update


def _restore(path: Path, cfg: GenConfig, nets: dict[str, nn.Module], optimizers: dict[str, Any],
             device: torch.device) -> tuple[RunFolder, LoopState]:
    from smallvision.engine.resume import load_resume, restore

    run = RunFolder(path).lock()
    tensors, meta = load_resume(path)
    state = LoopState.from_dict(restore(tensors, meta, nets, optimizers, None, device))
    if state.phase == "reported":
        run.unlock()
        raise UsageError(f"{path}: this run already finished ({state.stopped}); nothing to resume")
    return run, state


def saved_config(run_dir: str | Path) -> dict[str, Any]:
    """The settings of a generative run folder (for --resume), from its resume state."""
    from smallvision.engine.resume import load_resume

    meta = load_resume(Path(run_dir))[1]
    if meta.get("kind") not in ("gan", "autoencoder", "diffusion"):
        raise UsageError(f"{run_dir}: not a GAN, autoencoder or diffusion run")
    return meta["config"]


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


def _cluster_info(info: DatasetInfo, clusters: dict[str, Any]) -> DatasetInfo:
    """The data set as the networks of a cluster-conditioned GAN see it: one class per cluster."""
    return dataclasses.replace(info, num_classes=len(clusters["shares"]), class_names=())


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
        path = path / ("generator.safetensors" if (path / "generator.safetensors").exists() else "autoencoder.safetensors")
    if not path.is_file():
        raise UsageError(f"{checkpoint}: no such checkpoint or run folder")
    state, meta = load_checkpoint(path)
    if meta.get("net") != net:
        raise UsageError(f"{path}: holds {meta.get('net') or 'a classifier'}, not the {net} this command needs")
    info = DatasetInfo.from_dict(meta["dataset"])
    if meta.get("clusters"):
        info = _cluster_info(info, meta["clusters"])
    args = dict(meta["model_args"])
    if meta["model"] == "dcgan" and "sn" not in args:  # saved by dcgan version 1, before defaults were recorded
        args = {"extra": 0, "sn": False, **args}
    nets = create_generative(meta["model"], info, meta["kind"], **args)
    model = nets[net]
    model.load_state_dict(state)
    return model.to(device).eval(), meta


# ----------------------------------------------------------------------------- the loop both share
def run_session(s: GenSession, step: Callable[..., None], epoch_end: Callable[[GenSession, int], dict[str, Any]],
                line: Callable[[dict[str, Any]], str], finish: Callable[[GenSession], dict[str, Any]]) -> dict[str, Any]:
    """The epochs (unless a resumed run is past training), then `finish`; the folder unlocked whatever happens."""
    callbacks = [ProgressBar(), StopOnSignal()]
    try:
        if s.state.phase == "training":
            epoch_loop(s, callbacks, step, epoch_end, line)
        return finish(s)
    finally:
        call(callbacks, "close")
        s.progress.close()
        s.run.unlock()


def epoch_loop(s: GenSession, callbacks: list[Any], step: Callable[..., None],
               epoch_end: Callable[[GenSession, int], dict[str, Any]], line: Callable[[dict[str, Any]], str]) -> None:
    """Epochs of `step(s, xb, yb)` from wherever the state says, `epoch_end` after each (its row is
    logged with `line`); stops at --max-time; then the run enters phase ``trained``."""
    cfg, st = s.cfg, s.state
    for epoch in range(st.epoch, cfg.epochs + 1):
        for net in s.nets.values():
            net.train()
        s.meter = [torch.zeros((), device=s.device, dtype=torch.float64) for _ in range(2)]
        s.step_clock = time.perf_counter()
        call(callbacks, "on_epoch_start", s, epoch)
        for xb, yb in s.loader.batches(epoch, st.step_in_epoch):
            step(s, xb, yb)
            s.stepped(len(xb), callbacks)
        s.epoch_done()
        row = epoch_end(s, epoch)
        call(callbacks, "on_epoch_end", s, row, line(row))
        if cfg.max_time and st.elapsed >= cfg.max_time:
            st.stopped = f"time limit {cfg.max_time:g}s reached after epoch {epoch}"
            break
    st.stopped = st.stopped or "completed all epochs"
    s.enter_phase("trained")


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
        save_gif(frames, s.run / "samples.gif")
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
               ("losses.png", loss_caption)]
    if cfg.gif:
        figures.append(("samples.gif", "The fixed-noise samples, epoch by epoch"))
    if any("inception_score" in h for h in st.history):
        plot_quality(st.history, s.run / "quality.png", f"{cfg.model}: {CURVE_SAMPLES} samples scored during training")
        figures.append(("quality.png", "Quality against training time (--score-every)"))
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
