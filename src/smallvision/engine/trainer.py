"""The training engine: one readable `fit()` (nanoGPT's shape) plus its set-up helpers.

Sections of `fit`: set-up -> data -> model and optimiser -> the loop (train, validate,
checkpoint, stop rules) -> final test with the selected weights -> summary. Model selection
and stopping look at the validation split only; the test split is read once at the end (and
per epoch only with ``test_every_epoch``, reported but never used to decide anything).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import random
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from smallvision.config import TrainConfig
from smallvision.data import DatasetInfo, TensorLoader, load_dataset, split_validation
from smallvision.data.augment import tta_views
from smallvision.data.folder import ImageFiles, decode_all
from smallvision.data.loader import as_model_input, torch_order_seed, training_subset
from smallvision.data.stream import StreamLoader
from smallvision.engine.checkpoint import save_checkpoint, versions
from smallvision.engine.evaluate import EvalResult, evaluate
from smallvision.engine.optim import PlateauState, build_optimizer, lr_at
from smallvision.engine.progress import Progress
from smallvision.errors import DivergenceError, Preempted, UsageError
from smallvision.io import atomic_write_text, write_json
from smallvision.models import count_params, create_model


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    test_logits: torch.Tensor | None = None  # (N, K) on the CPU: the final test pass, for ensembles


# ----------------------------------------------------------------------------- set-up helpers
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps: Apple's MPS is not available here (use --device cpu or auto)")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 matrix instructions (AMX or AVX512-BF16), where bf16 autocast is
    2-3× faster than fp32; elsewhere torch emulates bf16 and it is slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def autocast_for(device: torch.device, precision: str) -> tuple[contextlib.AbstractContextManager, str]:
    """The autocast context for a precision setting, and the precision actually used.

    auto: bf16 on CUDA, fp32 elsewhere (seed recipes stay faithful); fast: bf16 wherever the
    hardware runs it natively (CUDA, or a CPU with AMX/AVX512-BF16), else fp32.
    """
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    elif precision == "fast":
        precision = "bf16" if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()) else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext(), "fp32"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if precision == "fp16" and device.type == "cpu":
        raise UsageError("--precision fp16 needs a GPU; on the CPU use bf16 or fp32")
    return torch.autocast(device.type, dtype=dtype), precision


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def new_run_dir(runs_dir: str | Path, cfg: TrainConfig) -> Path:
    base = cfg.name or f"{cfg.recipe or cfg.dataset.split(':')[0] + '-' + cfg.model}-{datetime.now():%Y%m%d-%H%M%S}"
    runs = Path(runs_dir)
    path, i = runs / base, 2
    while path.exists():
        path, i = runs / f"{base}-{i}", i + 1
    path.mkdir(parents=True)
    return path


@torch.inference_mode()
def extract_features(model: torch.nn.Module, x, amp: contextlib.AbstractContextManager,  # type: ignore[no-untyped-def]
                     batch_size: int = 512) -> torch.Tensor:
    """The frozen backbone's output for every image, (N, F) float32 on the same device."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        with amp:
            out.append(model.forward_features(x[i : i + batch_size]).float())
    return torch.cat(out)


def cached_features(model: torch.nn.Module, loader: TensorLoader | StreamLoader, amp: contextlib.AbstractContextManager
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, labels) of the training set: in memory, or streamed once from the files."""
    if isinstance(loader, TensorLoader):
        return extract_features(model, loader.x, amp), loader.y
    feats, labels = [], []
    for xb, yb in loader.in_order():
        feats.append(extract_features(model, xb, amp))
        labels.append(yb)
    return torch.cat(feats), torch.cat(labels)


@dataclass
class Prepared:
    """Data on the device, ready for the loop."""

    info: DatasetInfo  # with the normalisation actually applied
    train: TensorLoader | StreamLoader
    val: tuple[torch.Tensor, torch.Tensor] | None
    test: tuple[torch.Tensor, torch.Tensor]
    source: str
    test_files: list[str] | None = None
    skipped: list[str] = field(default_factory=list)


def prepare_data(cfg: TrainConfig, device: torch.device) -> Prepared:
    data = load_dataset(cfg.dataset, cfg.data_dir)
    x, y = data.train_x, data.train_y
    x, y = training_subset(x, y, cfg.train_limit, cfg.seed)
    tr_idx, va_idx = split_validation(len(x), cfg.val_size, cfg.seed)
    info = data.info
    if cfg.normalize is not None:  # [mean, std], each a number or one per channel
        per_channel = lambda v: tuple(float(a) for a in v) if isinstance(v, list) else (float(v),) * info.channels  # noqa: E731
        info = replace(info, mean=per_channel(cfg.normalize[0]), std=per_channel(cfg.normalize[1]))
        if len(info.mean) != info.channels or len(info.std) != info.channels:
            raise UsageError(f"normalize has {len(info.mean)} values per statistic but the images have {info.channels} channels")

    def put(xs: torch.Tensor):  # type: ignore[no-untyped-def]
        return as_model_input(xs, info.mean, info.std, device, cfg.channels_last)

    if isinstance(x, ImageFiles):  # a big image folder: decode each batch's files in worker processes
        train: TensorLoader | StreamLoader = StreamLoader(
            x[tr_idx], info.mean, info.std, device, cfg.batch_size, seed=cfg.seed, channels_last=cfg.channels_last,
            shift=cfg.shift, hflip=cfg.hflip, augment=cfg.augment)
        val = None
        if len(va_idx):
            vx, vy, bad = decode_all(x[va_idx].items, x.channels, x.size, x.workers)
            val, data.skipped = (put(vx), vy.to(device)), data.skipped + bad
    else:
        train = TensorLoader(put(x[tr_idx]), y[tr_idx].to(device), cfg.batch_size, shuffle=True, seed=cfg.seed,
                             shift=cfg.shift, hflip=cfg.hflip, augment=cfg.augment)
        val = (put(x[va_idx]), y[va_idx].to(device)) if len(va_idx) else None
    return Prepared(info, train, val, (put(data.test_x), data.test_y.to(device)), data.source, data.test_files,
                    data.skipped)


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    buf = io.StringIO()
    keys = list(dict.fromkeys(k for row in history for k in row))
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())
    write_json(run_dir / "metrics.json", history)


def _fmt(r: EvalResult | None) -> str:
    return "-" if r is None else f"{r.accuracy:.2f}% (loss {r.loss:.4f})"


class _StopSignal:
    """Turns SIGTERM/SIGINT into a flag the loop checks between steps (main thread only)."""

    def __init__(self) -> None:
        self.signum = 0
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopSignal:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)


def _checkpoint_rule(spec: str) -> tuple[int, float]:
    """'' -> (0, 0); '500' -> every 500 steps; '90s' -> every 90 seconds."""
    if not spec:
        return 0, 0.0
    try:
        return (0, float(spec[:-1])) if spec.endswith("s") else (int(spec), 0.0)
    except ValueError:
        raise UsageError(f"--checkpoint-every takes STEPS or SECONDS followed by s (e.g. 500 or 60s), got {spec!r}") from None


def build_model(cfg: TrainConfig, info: DatasetInfo, device: torch.device
                ) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.nn.Module | None]:
    """The model (seeded on its own: initial weights never depend on how the data were loaded,
    whose workers draw seeds), its optimiser, and the weight EMA when ``cfg.ema``."""
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, info, **cfg.model_args).to(device)
    model.tta = tta_views(cfg.shift, cfg.hflip, cfg.augment) if cfg.tta else ()  # eval mode only: validation,
    # test and every later evaluate/predict
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)
    ema = None
    if cfg.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    return model, optimizer, ema


def cache_backbone_features(cfg: TrainConfig, model: torch.nn.Module, data: Prepared,
                            amp: contextlib.AbstractContextManager) -> tuple[TensorLoader, Any, Any]:
    """Seed 002 §8: run the frozen backbone once over every split; training then only runs the
    head. Returns the loader over the training features and the (features, labels) of val/test."""
    if not cfg.freeze or cfg.unfreeze_after or cfg.ema or cfg.shift or cfg.hflip or cfg.tta or cfg.augment != "none":
        raise UsageError("--cache-features needs --freeze and no --unfreeze-after, --ema, --shift, --hflip, --augment or --tta "
                         "(the features are computed once, so the backbone and its inputs cannot change)")
    loader = TensorLoader(*cached_features(model, data.train, amp), cfg.batch_size, shuffle=True, seed=cfg.seed)
    val_xy = (extract_features(model, data.val[0], amp), data.val[1]) if data.val is not None else None
    test_xy = (extract_features(model, data.test[0], amp), data.test[1])
    return loader, val_xy, test_xy


def write_run_report(cfg: TrainConfig, run_dir: Path, data: Prepared, test: EvalResult, summary: dict[str, Any],
                     history: list[dict[str, Any]], device: torch.device, skipped: list[str]) -> None:
    from smallvision.report import classification_metrics, write_report

    m = classification_metrics(test.logits, data.test[1], data.info.num_classes)
    write_report(run_dir, title=f"{run_dir.name}: {cfg.model} on {data.info.name}", info=data.info, metrics=m,
                 images=data.test[0], split="test", summary=summary, history=history,
                 config=cfg.to_dict(), device=str(device), labels=data.test_files, skipped=skipped)


# ----------------------------------------------------------------------------- the loop
def _train_mode(model: torch.nn.Module, cfg: TrainConfig, epoch: int, progress: Progress, starting: bool) -> None:
    """Training mode for `epoch`: a frozen backbone (--freeze, until --unfreeze-after) takes no
    gradients and keeps its BatchNorm statistics."""
    model.train()
    frozen = cfg.freeze and not (cfg.unfreeze_after and epoch > cfg.unfreeze_after)
    model.features.requires_grad_(not frozen)
    if frozen:
        model.features.eval()  # a frozen backbone keeps its BatchNorm statistics
    elif cfg.freeze and cfg.unfreeze_after and epoch == cfg.unfreeze_after + 1 and starting:
        progress.log(f"epoch {epoch}: backbone unfrozen")


def _backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:  # fp16: scale the loss so small gradients survive
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def _log_tensorboard(tb: Any, row: dict[str, Any]) -> None:
    for key, value in row.items():
        if key not in ("epoch", "step") and value is not None:
            tb.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
    tb.flush()


def _stop_reason(cfg: TrainConfig, val: EvalResult | None, bad_epochs: int, train_time: float, epoch: int) -> str:
    """Why training stops after this evaluation ('' to go on); the rules watch validation only."""
    if cfg.target_accuracy and val is not None and val.accuracy >= cfg.target_accuracy:
        return f"reached target validation accuracy {cfg.target_accuracy:g}% at epoch {epoch}"
    if cfg.patience and bad_epochs >= cfg.patience:
        return f"early stop: no better validation accuracy for {cfg.patience} evaluations"
    if cfg.max_time and train_time >= cfg.max_time:
        return f"time limit {cfg.max_time:g}s reached after epoch {epoch}"
    return ""


def _summary(cfg: TrainConfig, run_dir: Path, data: Prepared, final: torch.nn.Module, loop: dict[str, Any],
             test: EvalResult, stopped: str, device: torch.device, precision: str, skipped: int) -> dict[str, Any]:
    """The run's summary.json: what it trained, how far, how fast, and its test figures."""
    return {
        "run": run_dir.name, "run_dir": str(run_dir), "recipe": cfg.recipe, "dataset": data.info.name,
        "model": cfg.model, "params": count_params(final), "epochs_run": loop["history"][-1]["epoch"],
        "best_epoch": loop["best_epoch"], "steps": loop["step"],
        "val_accuracy": loop["best_acc"] if data.val is not None else None,
        "test_accuracy": round(test.accuracy, 4), "test_loss": round(test.loss, 6),
        "train_seconds": round(loop["elapsed"], 3),
        "images_per_second": round(loop["images_seen"] / max(loop["step_time"], 1e-9), 1),
        "stopped": stopped, "device": str(device), "precision": precision, "threads": torch.get_num_threads(),
        "data_source": data.source, "skipped_images": skipped,
    }


def fit(cfg: TrainConfig, runs_dir: str | Path = "runs", progress: Progress | None = None,
        command: str = "", resume: str | Path | None = None) -> TrainResult:
    """Train `cfg`; with `resume` (a run folder) continue that run exactly where it stopped."""
    from smallvision.engine import resume as rs

    cfg.validate()
    if (cfg.patience or cfg.target_accuracy) and cfg.val_size == 0:
        raise UsageError("--patience and --target-accuracy watch the validation split; set --val-size > 0")
    every_steps, every_secs = _checkpoint_rule(cfg.checkpoint_every)
    saved = None
    if resume is not None:  # read and check the saved state before any work
        saved = rs.load_resume(Path(resume))
        rs.check_compatible(saved[1]["config"], cfg.to_dict())
    # --- set-up
    seed_everything(cfg.seed, cfg.deterministic)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    amp, precision = autocast_for(device, cfg.precision)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None  # fp16 needs loss scaling
    progress = progress or Progress(enabled=False)

    # --- data
    data = prepare_data(cfg, device)
    loader = data.train
    steps_per_epoch = len(loader)

    # --- model and optimiser
    model, optimizer, ema = build_model(cfg, data.info, device)
    eval_model = lambda: ema.module if ema is not None else model  # noqa: E731  weights we judge and save
    judge = eval_model  # what validation/test run on: the model, or only its head on cached features
    val_xy, test_xy, cache_seconds = data.val, data.test, None
    if cfg.cache_features:  # seed 002 §8: run the frozen backbone once, then train the head on its output
        t0 = time.perf_counter()
        loader, val_xy, test_xy = cache_backbone_features(cfg, model, data, amp)
        cache_seconds = time.perf_counter() - t0
        judge = lambda: model.head  # noqa: E731
    fwd = model.head if cfg.cache_features else (torch.compile(model) if cfg.compile else model)
    plateau = PlateauState(cfg.plateau_patience, cfg.gamma)
    meta_base = {"model": cfg.model, "model_args": cfg.model_args, "dataset": data.info.to_dict(),
                 "config": cfg.to_dict(), "versions": versions()}

    # --- the loop's state: fresh, or restored from the run folder
    loop: dict[str, Any] = {"epoch": 1, "step_in_epoch": 0, "step": 0, "best_acc": -1.0, "best_loss": math.inf,
                            "best_epoch": 0, "bad_epochs": 0, "history": [], "elapsed": 0.0, "images_seen": 0,
                            "step_time": 0.0, "acc": [0.0, 0, 0], "plateau": plateau.state_dict()}
    best_state = None
    if saved is not None:
        run_dir = Path(resume)  # type: ignore[arg-type]
        loop = rs.restore(*saved, model, optimizer, ema, scaler, device)
        plateau.load_state_dict(loop["plateau"])
        if loop.get("finished"):
            raise UsageError(f"{run_dir}: this run already finished ({loop['finished']}); nothing to resume")
        if (run_dir / "best.safetensors").exists() and data.val is not None:
            from smallvision.engine.checkpoint import load_checkpoint

            best_state = load_checkpoint(run_dir / "best.safetensors")[0]
        progress.log(f"resuming {run_dir} at epoch {loop['epoch']}, step {loop['step_in_epoch']} of {steps_per_epoch}")
    else:
        run_dir = new_run_dir(runs_dir, cfg)
        write_json(run_dir / "config.json", {**cfg.to_dict(), "resolved_device": str(device),
                                             "precision": precision, "command": command})
    progress.log(f"run {run_dir} | {cfg.dataset} ({len(loader.x)} train, {0 if data.val is None else len(data.val[0])}"
                 f" val, {len(data.test[0])} test) | {cfg.model} ({count_params(model):,} params) | {device}, {precision}")
    tb = None
    if cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package (a dependency)

        tb = SummaryWriter(str(run_dir / "tensorboard"))

    def save_state() -> None:
        loop["plateau"] = plateau.state_dict()
        rs.save_resume(run_dir, model, optimizer, ema, scaler, loop, meta_base)

    history: list[dict[str, Any]] = loop["history"]
    stopped = "completed all epochs"
    t_start = time.perf_counter() - loop["elapsed"]
    last_save = time.perf_counter()
    try:
        with _StopSignal() as stop:
            for epoch in range(loop["epoch"], cfg.epochs + 1):
                # --- train one epoch (from step_in_epoch when resuming mid-epoch)
                _train_mode(model, cfg, epoch, progress, starting=loop["step_in_epoch"] == 0)
                t0 = time.perf_counter()
                loss_sum, n_correct, n_seen = loop["acc"]
                loss_acc = torch.zeros((), device=device, dtype=torch.float64)
                correct = torch.zeros((), device=device, dtype=torch.int64)
                progress.start_epoch(f"epoch {epoch}/{cfg.epochs}", steps_per_epoch)
                if cfg.data_order == "torch" and loop["step_in_epoch"] == 0:
                    loop["perm_seed"] = torch_order_seed()  # as a DataLoader(shuffle=True) would draw it
                perm_seed = loop.get("perm_seed") if cfg.data_order == "torch" else None
                for xb, yb in loader.batches(epoch, loop["step_in_epoch"], perm_seed):
                    step = loop["step"]
                    lr = lr_at(cfg, step, steps_per_epoch, plateau.factor)
                    for group in optimizer.param_groups:
                        group["lr"] = lr * group.get("lr_mult", 1.0)
                    with amp:
                        logits = fwd(xb)
                    loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
                    if device.type == "cpu" and not torch.isfinite(loss):  # free on the CPU: no device sync
                        raise DivergenceError(
                            f"loss became {loss.item()} at step {step + 1} (epoch {epoch}); the learning rate "
                            f"{lr:g} is likely too high. Last good checkpoint: {run_dir / 'last.safetensors'}")
                    _backward_step(loss, optimizer, scaler)
                    if ema is not None:
                        ema.update_parameters(model)
                    loss_acc += loss.detach() * len(yb)
                    correct += (logits.detach().argmax(1) == yb).sum()
                    n_seen += len(yb)
                    loop["step"] += 1
                    loop["step_in_epoch"] += 1
                    progress.advance()
                    now = time.perf_counter()
                    due = (every_steps and loop["step"] % every_steps == 0) or (every_secs and now - last_save >= every_secs)
                    if due or stop.signum:
                        loop["acc"] = [loss_sum + float(loss_acc), n_correct + int(correct), n_seen]
                        loop["elapsed"] = now - t_start
                        loop["step_time"] += now - t0
                        t0 = now
                        loss_sum, n_correct = loop["acc"][0], loop["acc"][1]
                        loss_acc.zero_(), correct.zero_()
                        save_state()
                        last_save = time.perf_counter()
                        if stop.signum:
                            progress.close()
                            raise Preempted(f"stopped by signal {stop.signum} at epoch {epoch}, step "
                                            f"{loop['step_in_epoch']}/{steps_per_epoch}; state saved. Continue with: "
                                            f"smallvision train --resume {run_dir}")
                loop["step_time"] += time.perf_counter() - t0
                loss_sum, n_correct = loss_sum + float(loss_acc), n_correct + int(correct)
                loop["images_seen"] += n_seen
                train_loss = loss_sum / max(n_seen, 1)
                if not math.isfinite(train_loss):
                    raise DivergenceError(f"loss became {train_loss} during epoch {epoch} (by step {loop['step']}); the "
                                          f"learning rate {cfg.lr:g} is likely too high. Last good checkpoint: "
                                          f"{run_dir / 'last.safetensors'}")
                loop.update(epoch=epoch + 1, step_in_epoch=0, acc=[0.0, 0, 0])

                # --- validate, record, checkpoint (every eval_every epochs and at the end)
                last_epoch = epoch == cfg.epochs or (cfg.max_time and time.perf_counter() - t_start >= cfg.max_time)
                if epoch % cfg.eval_every and not last_epoch:
                    if cfg.eval_every <= 10:  # sparse evaluation (full-batch recipes) would flood the log
                        progress.end_epoch(f"epoch {epoch}: train loss {train_loss:.4f}")
                    continue
                val = evaluate(judge(), *val_xy, autocast=amp) if val_xy is not None else None
                test = evaluate(judge(), *test_xy, autocast=amp) if cfg.test_every_epoch else None
                if val is not None and cfg.scheduler == "plateau":
                    plateau.update(val.loss)
                train_time = time.perf_counter() - t_start
                row = {"epoch": epoch, "step": loop["step"], "lr": lr, "train_loss": train_loss,
                       "train_accuracy": 100.0 * n_correct / max(n_seen, 1),
                       "val_loss": val.loss if val else None, "val_accuracy": val.accuracy if val else None,
                       "test_loss": test.loss if test else None, "test_accuracy": test.accuracy if test else None,
                       "seconds": round(train_time, 3)}
                history.append(row)
                if tb is not None:
                    _log_tensorboard(tb, row)
                improved = val is None or (val.accuracy, -val.loss) > (loop["best_acc"], -loop["best_loss"])
                meta = {**meta_base, "epoch": epoch, "step": loop["step"], "metrics": row}
                state = eval_model().state_dict()
                if improved:
                    loop.update(best_epoch=epoch, bad_epochs=0, best_acc=val.accuracy if val else -1.0,
                                best_loss=val.loss if val else 0.0)
                    best_state = {k: v.detach().clone() for k, v in state.items()}
                    if val is not None:
                        save_checkpoint(run_dir / "best.safetensors", best_state, meta)
                else:
                    loop["bad_epochs"] += 1
                save_checkpoint(run_dir / "last.safetensors", state, meta)
                write_metrics(run_dir, history)
                loop["elapsed"] = time.perf_counter() - t_start
                save_state()
                last_save = time.perf_counter()
                progress.end_epoch(f"epoch {epoch:>3}/{cfg.epochs}  lr {lr:.3g}  train {row['train_accuracy']:.2f}% "
                                   f"(loss {train_loss:.4f})  val {_fmt(val)}" + (f"  test {_fmt(test)}" if test else "")
                                   + f"  [{train_time:.1f}s]")
                reason = _stop_reason(cfg, val, loop["bad_epochs"], train_time, epoch)
                if reason:
                    stopped = reason
                    break
    except torch.OutOfMemoryError:
        progress.close()
        bs = cfg.batch_size or len(loader.x)
        raise UsageError(f"out of {device.type.upper()} memory at batch size {bs}; try --batch-size {max(bs // 2, 1)} "
                         f"(the last good checkpoint is in {run_dir})") from None
    progress.close()
    if tb is not None:
        tb.close()
    loop["finished"] = stopped
    save_state()

    # --- final test with the selected weights (best on validation; the last ones without validation)
    final = eval_model()
    if best_state is not None:
        final.load_state_dict(best_state)
    test = evaluate(judge(), *test_xy, autocast=amp, keep_logits=True)
    skipped = data.skipped + (data.train.skipped if isinstance(data.train, StreamLoader) else [])
    summary = _summary(cfg, run_dir, data, final, loop, test, stopped, device, precision, len(skipped))
    if cache_seconds is not None:
        summary["feature_cache_seconds"] = round(cache_seconds, 3)
    if data.val is None:  # no validation: "best" is the final model; keep the file for tools that expect it
        save_checkpoint(run_dir / "best.safetensors", final.state_dict(),
                        {**meta_base, "epoch": loop["best_epoch"], "metrics": history[-1]})
    write_json(run_dir / "summary.json", summary)
    if cfg.report:
        write_run_report(cfg, run_dir, data, test, summary, history, device, skipped)
    return TrainResult(run_dir, summary, history, test.logits)
