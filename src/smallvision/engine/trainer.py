"""The training engine: one readable `fit()` (nanoGPT's shape) over a set-up `Session`.

``fit`` = `setup` (engine/setup.py) -> `epoch_loop` (engine/run.py, the skeleton every loop
shares) over `classifier_step` and `classifier_epoch_end` (-> `evaluate_epoch` -> `select`),
with callbacks (progress, periodic saves, signals, TensorBoard; engine/callbacks.py) -> `finish`
(the final test with the selected weights, summary, report). Model selection and stopping look
at the validation split only; the test split is read once at the end (and per epoch only with ``test_every_epoch``, reported but never used to decide anything). Each phase
is saved (engine/run.py), so ``--resume`` finishes a run killed anywhere, the final test included.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from smallvision.config import TrainConfig
from smallvision.data.augment import mix_batch
from smallvision.data.loader import epoch_generator
from smallvision.engine import distributed
from smallvision.engine.callbacks import PeriodicSave, ProgressBar, StopOnSignal, TensorBoardLog
from smallvision.engine.evaluate import EvalResult, evaluate, n_correct, task_loss
from smallvision.engine.progress import Progress
from smallvision.engine.run import crash_point, epoch_loop, running
from smallvision.engine.setup import Session, setup
from smallvision.errors import DivergenceError, UsageError
from smallvision.extras import installed
from smallvision.io import atomic_write_text, write_json
from smallvision.modelfile import save_checkpoint
from smallvision.models import count_params
from smallvision.optim import lr_at, two_phases
from smallvision.runfolder import RunFolder


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    test_logits: torch.Tensor | None = None  # (N, K) on the CPU: the final test pass, for ensembles


# ----------------------------------------------------------------------------- one step, one epoch
def train_step(model: Any, optimizer: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor, lr: float,
               cfg: TrainConfig, amp: Any, scaler: torch.amp.GradScaler | None = None,
               weight: torch.Tensor | None = None, mix: tuple[torch.Tensor, float] | None = None,
               soft: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step at learning rate `lr` (× each group's ``lr_mult``); returns (loss, logits).
    `mix`: (each image's partner, λ) of a mixup/CutMix batch (data.augment.mix_batch); `soft`: the
    teachers' probabilities at --distill-temperature (engine/distill.py). Shared by the loop,
    lr-find and the benchmarks."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
    with amp:
        logits = model(xb)
    z = logits.float()
    loss = task_loss(z, yb, weight, cfg.label_smoothing)
    if mix is not None:  # the labels mixed as the images were
        partner, lam = mix
        loss = lam * loss + (1 - lam) * task_loss(z, yb[partner], weight, cfg.label_smoothing)
    if soft is not None:
        from smallvision.engine.distill import distill_loss

        loss = (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * distill_loss(z, soft, cfg.distill_temperature)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:  # fp16: scale the loss so small gradients survive
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.detach(), logits.detach()


def _diverged(s: Session, value: float, where: str, lr: float) -> DivergenceError:
    return DivergenceError(f"loss became {value} {where}; the learning rate {lr:g} is likely too high. "
                           f"Last good checkpoint: {s.run / RunFolder.LAST}")


def classifier_step(s: Session, xb: torch.Tensor, yb: torch.Tensor) -> None:
    """One optimiser step at the schedule's rate (mixup/CutMix drawn per global step, so a resumed
    run mixes the same way; the teachers' soft targets with --teacher); the loss and the correct
    count into the epoch's sums."""
    cfg, st = s.cfg, s.state
    if s.on_features and cfg.head == "exact":
        return solve_head_step(s, xb, yb)
    s.lr = lr = lr_at(cfg, st.step, len(s.loader), s.plateau.factor)
    mix = None
    if cfg.mixup or cfg.cutmix:
        xb, partner, lam = mix_batch(xb, epoch_generator(cfg.seed + 3, st.step), cfg.mixup, cfg.cutmix)
        mix = (partner, lam)
    soft = s.teachers.probs(xb) if s.teachers is not None else None
    loss, logits = train_step(s.fwd, s.optimizer, xb, yb, lr, cfg, s.rt.amp, s.rt.scaler, s.data.class_weight, mix, soft)
    if s.rt.device.type == "cpu" and not torch.isfinite(loss):  # free on the CPU: no device sync
        raise _diverged(s, loss.item(), f"at step {st.step + 1} (epoch {st.epoch})", lr)
    if s.ema is not None:
        s.ema.update_parameters(s.model)
    s.add("loss", loss * len(yb))
    s.add("correct", n_correct(logits, yb))


def solve_head_step(s: Session, xb: torch.Tensor, yb: torch.Tensor) -> None:
    """--head exact: phase 1's one step solves the head on every cached feature (engine/head.py)."""
    from smallvision.engine.head import CLASS_MEANS_UP_TO, fit_head, set_head

    fit = fit_head(xb, yb, s.data.info.num_classes, s.cfg.seed, smoothing=s.cfg.label_smoothing)
    set_head(s.model.head, fit)
    if fit.kind == "class means":
        s.meta["head_fit"] = {"kind": fit.kind, "scale": fit.scale}
        s.progress.log(f"phase 1: head = the nearest class mean (a class has at most {CLASS_MEANS_UP_TO} "
                       "labelled photos: too few for a logistic regression to beat it)")
    else:
        s.meta["head_fit"] = {"kind": fit.kind, "l2": fit.lam,
                              "cv_accuracy": {f"{k:g}": v for k, v in fit.cv_accuracy.items()}}
        how = (f"chosen by {fit.folds}-fold cross-validation on the training split: "
               f"{max(fit.cv_accuracy.values()):.2f} %" if fit.folds else "no folds to choose on: the middle of the grid")
        s.progress.log(f"phase 1: head solved (L2 {fit.lam:g}, {how})")
    with torch.no_grad():
        logits = s.model.head(xb)
    s.add("loss", task_loss(logits.float(), yb, None, s.cfg.label_smoothing) * len(yb))
    s.add("correct", n_correct(logits, yb))


def classifier_epoch_end(s: Session, epoch: int) -> tuple[dict[str, Any] | None, str]:
    """The epoch's training figures (summed over processes), then validation and model selection
    (every --eval-every epochs, and the last); the metrics row and the log line."""
    cfg, st = s.cfg, s.state
    sums, seen = s.take_sums()
    loss_sum, correct, seen = distributed.all_sum([sums.get("loss", 0.0), sums.get("correct", 0), seen], s.rt.device,
                                                  s.rt.dist)
    st.images_seen += seen
    st.epoch, st.step_in_epoch = epoch + 1, 0
    loss, acc = loss_sum / max(seen, 1), 100.0 * correct / max(seen, 1)
    if not math.isfinite(loss):
        raise _diverged(s, loss, f"during epoch {epoch} (by step {st.step})", cfg.lr)
    if s.avg is not None and epoch > cfg.epochs - cfg.average_last:  # one of the last K epochs
        s.avg.update_parameters(s.eval_model())
    last = epoch == cfg.epochs or (cfg.max_time and st.elapsed >= cfg.max_time)
    phase_end = epoch == cfg.unfreeze_after and two_phases(cfg)
    if cfg.select == "phases" and not (last or phase_end):  # judge each phase's result, not its epochs
        return None, f"{s.phase_label(epoch)}epoch {epoch}/{cfg.epochs}: train {acc:.2f}% (loss {loss:.4f})  [{st.elapsed:.1f}s]"
    if epoch % cfg.eval_every and not last:  # sparse evaluation (full-batch recipes)
        return None, f"epoch {epoch}: train loss {loss:.4f}" if cfg.eval_every <= 10 else ""
    row, val, line = evaluate_epoch(s, epoch, s.lr, loss, acc)
    select(s, row, val)
    return row, line


# ----------------------------------------------------------------------------- evaluate and select
def _fmt(r: EvalResult | None) -> str:
    return "-" if r is None else f"{r.accuracy:.2f}% (loss {r.loss:.4f})"


def evaluate_epoch(s: Session, epoch: int, lr: float, train_loss: float, train_acc: float
                   ) -> tuple[dict[str, Any], EvalResult | None, str]:
    """Validate (and with ``test_every_epoch`` test, for the record); the epoch's metrics row and log line."""
    val = _reduced(s, evaluate(s.judge(), *s.val_xy, autocast=s.rt.amp)) if s.val_xy is not None else None
    test = evaluate(s.judge(), *s.test_xy) if s.cfg.test_every_epoch else None  # fp32, as the final test
    if val is not None and s.cfg.scheduler == "plateau":
        s.plateau.update(val.loss)
    s.sync()
    row = {"epoch": epoch, "step": s.state.step, "lr": lr, "train_loss": train_loss, "train_accuracy": train_acc,
           "val_loss": val.loss if val else None, "val_accuracy": val.accuracy if val else None,
           "test_loss": test.loss if test else None, "test_accuracy": test.accuracy if test else None,
           "seconds": round(s.state.elapsed, 3)}
    line = (f"{s.phase_label(epoch)}epoch {epoch:>3}/{s.cfg.epochs}  lr {lr:.3g}  train {train_acc:.2f}% (loss {train_loss:.4f})  "
            f"val {_fmt(val)}" + (f"  test {_fmt(test)}" if test else "") + f"  [{s.state.elapsed:.1f}s]")
    return row, val, line


def _reduced(s: Session, r: EvalResult) -> EvalResult:
    """A result over every process's shard of the split (the same figures on every process)."""
    if not s.rt.dist.on:
        return r
    loss, correct, n = distributed.all_sum([r.loss * r.n, r.accuracy * r.n / 100, r.n], s.rt.device, s.rt.dist)
    return EvalResult(loss / max(n, 1), 100.0 * correct / max(n, 1), int(n))


def write_metrics(run: RunFolder, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in history for k in row)))
    w.writeheader()
    w.writerows(history)
    atomic_write_text(run / RunFolder.METRICS_CSV, buf.getvalue())
    write_json(run / RunFolder.METRICS_JSON, history)


def select(s: Session, row: dict[str, Any], val: EvalResult | None) -> None:
    """Record the row; keep the weights when validation improved (best), always the last ones;
    save the resume state. Without validation every epoch counts as an improvement."""
    st = s.state
    st.history.append(row)
    meta = {**s.meta, "epoch": row["epoch"], "step": st.step, "metrics": row}
    weights = s.eval_model().state_dict()
    # --select phases: the later phase (fine-tuned) is kept unless the head alone is strictly more accurate
    later_wins = s.cfg.select == "phases" and val is not None and val.accuracy >= st.best_acc
    if val is None or later_wins or (val.accuracy, -val.loss) > (st.best_acc, -st.best_loss):
        st.best_epoch, st.bad_epochs = row["epoch"], 0
        st.best_acc, st.best_loss = (val.accuracy, val.loss) if val else (-1.0, 0.0)
        s.best_weights = {k: v.detach().clone() for k, v in weights.items()}
        if val is not None and s.rt.dist.main:
            save_checkpoint(s.run / RunFolder.BEST, s.best_weights, meta)
    else:
        st.bad_epochs += 1
    st.stopped = _stop_reason(s.cfg, val, st.bad_epochs, st.elapsed, row["epoch"])  # saved with the state below
    if s.rt.dist.main:  # one writer
        save_checkpoint(s.run / RunFolder.LAST, weights, meta)
        write_metrics(s.run, st.history)
    s.save_state()
    crash_point(f"epoch-{row['epoch']}")


def _stop_reason(cfg: TrainConfig, val: EvalResult | None, bad_epochs: int, train_time: float, epoch: int) -> str:
    """Why training stops after this evaluation ('' to go on); the rules watch validation only."""
    if cfg.target_accuracy and val is not None and val.accuracy >= cfg.target_accuracy:
        return f"reached target validation accuracy {cfg.target_accuracy:g}% at epoch {epoch}"
    if cfg.patience and bad_epochs >= cfg.patience:
        return f"early stop: no better validation accuracy for {cfg.patience} evaluations"
    if cfg.max_time and train_time >= cfg.max_time:
        return f"time limit {cfg.max_time:g}s reached after epoch {epoch}"
    return ""


# ----------------------------------------------------------------------------- phases after the loop
def _summary(s: Session, final: torch.nn.Module, test: EvalResult | None) -> tuple[dict[str, Any], list[str]]:
    """The run's summary.json (what it trained, how far, how fast, its test figures) and the
    files left out as unreadable."""
    st, cfg = s.state, s.cfg
    skipped = s.data.skipped + s.data.train.skipped
    out = {
        "run": s.run.name, "run_dir": str(s.run), "recipe": cfg.recipe, "dataset": s.data.info.name,
        "model": cfg.model, "params": count_params(final), "epochs_run": st.history[-1]["epoch"],
        "best_epoch": st.best_epoch, "steps": st.step, "val_accuracy": st.best_acc if s.data.val is not None else None,
        "test_accuracy": round(test.accuracy, 4) if test else None, "test_loss": round(test.loss, 6) if test else None,
        "train_seconds": round(st.elapsed, 3), "images_per_second": round(st.images_seen / max(st.step_time, 1e-9), 1),
        "stopped": st.stopped, "device": str(s.rt.device), "precision": s.rt.precision,
        "threads": torch.get_num_threads(), "data_source": s.data.source, "skipped_images": len(skipped),
    }
    from smallvision.engine.setup import pretrained_note

    if note := pretrained_note(cfg):
        out["weights"] = note.removeprefix(", ")
    if s.cache_seconds is not None:
        out["feature_cache_seconds"] = round(s.cache_seconds, 3)
    if s.stage_seconds:  # this process's part of the run (a resumed run: since the resume)
        out["stage_seconds"] = {k: round(v, 2) for k, v in s.stage_seconds.items()}
    return out, skipped


def finish(s: Session) -> TrainResult:
    """trained -> tested -> reported: the test set read once with the selected weights (best on
    validation; the last ones without validation), summary.json, then the report. Rank 0's work."""
    if not s.rt.dist.main:
        return TrainResult(s.run.path, {}, s.state.history)
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        s.stage_seconds[stage] = time.perf_counter() - clock
        clock = time.perf_counter()

    s.stage_seconds["train"] = s.state.elapsed
    final = s.eval_model()
    if two_phases(s.cfg) or (s.cfg.cache_features and s.cfg.tta):  # the whole model on the images (and mirrors)
        s.use_phase(s.cfg.epochs, final_test=True)
    if s.best_weights is not None and (s.data.val is not None or s.cfg.average_last):
        final.load_state_dict(s.best_weights)
    if not s.cfg.test:  # chosen on validation only (tune's trials): the test set stays unread
        summary = {**_summary(s, final, None)[0], "test_accuracy": None, "test_loss": None}
        write_json(s.run / RunFolder.SUMMARY, summary)
        s.enter_phase("reported")
        return TrainResult(s.run.path, summary, s.state.history)
    # the test split in fp32 whatever the training precision: the figure is then the one that
    # predict, serve and an exported ONNX file give (bf16 autocast moved a fine-tuned photo model's
    # accuracy on 100 held-out photos from 97 % to 95 %: borderline images flip)
    test = evaluate(s.judge(), *s.test_xy, keep_logits=True)
    lap("test")
    labels_doc = choose_thresholds(s, test) if s.data.info.multilabel else None
    calib = calibrate(s, final, test) if labels_doc is None else None
    lap("calibration")
    ood_doc = fit_ood(s, final, test.logits) if labels_doc is None else None
    lap("none_of_these")
    summary, skipped = _summary(s, final, test)
    if ood_doc:
        summary["ood"] = {k: v for k, v in ood_doc.items() if k != "quantiles"}
    if labels_doc is not None:
        summary.update(multilabel_summary(labels_doc))
    if calib:
        summary["calibration"] = {k: v for k, v in calib.items() if k != "reliability"}
        calib = calib if "temperature" in calib else None
        if calib:  # the loss of the probabilities the model now gives, as evaluate reports it
            summary["test_loss"] = round(calib["test_nll_after"], 6)
    write_json(s.run / RunFolder.SUMMARY, summary)
    if s.state.phase == "trained":
        s.enter_phase("tested")
    from smallvision.report.build import RunRecord

    record = RunRecord("test", summary, s.state.history, s.cfg.to_dict(), reproduce_command(s.cfg.to_dict()),
                       str(s.rt.device), s.data.test_files, skipped)
    if s.cfg.report and labels_doc is not None:
        from smallvision.report.build import write_multilabel_report

        write_multilabel_report(s.run.path, record, title=f"{s.run.name}: {s.cfg.model} on {s.data.info.name}",
                                info=s.data.info, logits=test.logits, y=s.data.test[1], thresholds=labels_doc,
                                images=s.data.test[0], train_counts=s.data.train_counts)
    elif s.cfg.report:
        from smallvision.report import classification_metrics, write_report

        logits = test.logits / final.temperature  # the probabilities predict and serve will give
        m = classification_metrics(logits, s.data.test[1], s.data.info.num_classes)
        write_report(s.run.path, record, title=f"{s.run.name}: {s.cfg.model} on {s.data.info.name}", info=s.data.info,
                     metrics=m, images=s.data.test[0], calibration=calib, heatmap_fn=_heatmap_fn(final),
                     train_counts=s.data.train_counts)
    s.enter_phase("reported")
    return TrainResult(s.run.path, summary, s.state.history, test.logits)


def reproduce_command(config: dict[str, Any]) -> str:
    """`smallvision train ...` with every setting that differs from the defaults (recipe first): the
    report's "Reproduce" line. Settings without a flag of their own that a user sets (the schedules'
    parameters) come as ``--set KEY=VALUE``; the engine's own (what `cv` sets, the rules' reasons)
    are left out: config.json carries them."""
    from smallvision.config import FIELDS, TrainConfig
    from smallvision.recipes import recipe_config

    base = recipe_config(config["recipe"]) if config.get("recipe") else TrainConfig()
    args = ["smallvision", "train"] + (["--recipe", config["recipe"]] if config.get("recipe") else [])
    for key, default in base.to_dict().items():
        val = config.get(key, default)
        meta = FIELDS[key].metadata
        if key == "recipe" or val == default or not (meta["flag"] or meta["advanced"]):
            continue
        if meta["advanced"]:
            args += ["--set", f"{key}={json.dumps(val)}"]
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(val, bool):
            args.append(flag if val else flag.replace("--", "--no-", 1))
        elif key in ("model_args", "data_args"):  # repeatable KEY=VALUE flags
            args += [x for k, v in val.items() for x in (flag[:-1], f"{k}={json.dumps(v)}")]
        elif isinstance(val, list):
            args += [flag, ",".join(str(v) for v in val)]
        elif val is not None:
            args += [flag, str(val)]
    return shlex.join(args)


def _heatmap_fn(model: torch.nn.Module) -> Any:
    """The report's heatmaps of its top-loss images (models/attribution.heatmaps, fp32, the whole model);
    None without the 'explain' extra (captum): the report shows the images without them."""
    if not installed("captum"):
        return None

    def fn(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from smallvision.models.attribution import heatmaps

        return heatmaps(model, x.float(), target)
    return fn


def choose_thresholds(s: Session, test: EvalResult) -> dict[str, Any]:
    """A multi-label run's decision thresholds (multilabel.py): chosen on the validation split
    with the selected weights (0.5 without one), written into the checkpoints so predict, serve
    and exports decide with them; the test split scored at them."""
    from smallvision.modelfile import write_into_checkpoint
    from smallvision.multilabel import parse_rule, summarise

    val = evaluate(s.judge(), *s.val_xy, keep_logits=True) if s.val_xy is not None else None
    assert test.logits is not None
    doc = summarise(val.logits if val else None, s.val_xy[1] if s.val_xy is not None else None, test.logits,
                    s.test_xy[1], parse_rule(s.cfg.threshold))
    for name in (RunFolder.BEST, RunFolder.LAST):
        if (s.run / name).is_file():
            write_into_checkpoint(s.run / name, {k: v for k, v in doc.items() if k != "test"}, key="thresholds")
    write_json(s.run / RunFolder.THRESHOLDS, doc)
    s.progress.log(f"thresholds: {doc['chosen']}: {', '.join(f'{t:g}' for t in sorted(set(doc['values'])))}")
    return doc


def multilabel_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The summary's multi-label figures: test_accuracy becomes the exact match at the chosen
    thresholds (what predict gives), beside macro/micro-F1 and mAP."""
    t = doc["test"]
    return {"test_accuracy": t["exact_match"], "test_macro_f1": t["macro_f1"], "test_micro_f1": t["micro_f1"],
            "test_map": t["map"], "thresholds": doc["chosen"]}


def calibrate(s: Session, final: torch.nn.Module, test: EvalResult) -> dict[str, Any] | None:
    """Temperature scaling on the validation split (fp32, the selected weights), written into the
    run's checkpoints so that evaluate, predict, serve and export give calibrated probabilities.
    None without a validation split or with --no-calibrate. With several processes rank 0 fits on
    its shard of the validation split."""
    if not (s.cfg.calibrate and s.val_xy is not None and test.logits is not None):
        return None
    from smallvision.calibration import reliability, summarise, why_not
    from smallvision.modelfile import write_into_checkpoint

    val = evaluate(s.judge(), *s.val_xy, keep_logits=True)
    assert val.logits is not None
    if reason := why_not(val.logits, s.val_xy[1]):
        s.progress.log(f"not calibrated: {reason}")
        return {"skipped": reason}
    doc = summarise(val.logits, s.val_xy[1], test.logits, s.test_xy[1])
    for name in (RunFolder.BEST, RunFolder.LAST):
        if (s.run / name).is_file():
            write_into_checkpoint(s.run / name, doc)
    write_json(s.run / RunFolder.CALIBRATION, doc)
    final.temperature = doc["temperature"]
    y = s.test_xy[1]
    return {**doc, "reliability": (reliability(test.logits, y), reliability(test.logits / doc["temperature"], y))}


def _cache_for_ood(s: Session, final: torch.nn.Module) -> tuple[Any, Any, Any] | None:
    """(training rows, validation (x, y) or None, top module or None) of the run's cache, where it
    holds what the network computes below the part that trained: the features of a backbone frozen
    for the whole run, or the activations below --top-stages (to run the trained top on). None
    otherwise, and in any precision but fp32 (a cache computed under bf16 autocast would not give
    the features predict scores)."""
    if s.rt.precision != "fp32" or final is not s.model:
        return None
    n, acts = len(s.data.train.x), getattr(s.model, "_activations", None)
    if acts is not None and len(acts.train.x) == n:
        return acts.train, acts.val, acts.top
    if s.cached is not None and not two_phases(s.cfg) and len(s.cached[0].x) == n:
        return s.cached[0], s.cached[1], None
    return None


def _features_from_cache(final: torch.nn.Module, top: Any, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-logit features and raw logits, fp32 on the CPU, of cached rows `a` (through `top` first)."""
    was = final.training
    final.eval()
    with torch.inference_mode():
        f = torch.cat([top(a[i : i + 64]).float() for i in range(0, len(a), 64)]) if top is not None else a.float()
        z = final.forward_head(f).float()
    final.train(was)
    return f.cpu(), z.cpu()


def _ood_inputs(s: Session, final: torch.nn.Module, take: list[int]) -> tuple[tuple[torch.Tensor, ...], Any]:
    """The detector's inputs: (features, logits, labels) of the training sample, and (features,
    logits) of the validation split or None. Read from the run's cache where it holds them
    (`_cache_for_ood`: the same numbers as a pass over the images, `tests/test_photo_auto.py`;
    on the photo suite's 500-photo folders the detector's step took 18-22 s of a ~100 s run with
    the passes, 3-8 s without), else a pass over the images."""
    import smallvision.ood as ood

    cache = _cache_for_ood(s, final)
    if cache is not None:
        rows, val, top = cache
        idx = torch.tensor(take, device=rows.x.device)
        train = (*_features_from_cache(final, top, rows.x[idx]), rows.y[idx].cpu())
        return train, (_features_from_cache(final, top, val[0]) if val is not None else None)
    f, z, y = [], [], []
    for xb, yb in s.data.train.rows(take):
        fb, zb = ood.features_and_logits(final, xb)
        f.append(fb), z.append(zb), y.append(yb.cpu())
    val = ood.features_and_logits(final, s.data.val[0]) if s.data.val is not None else None
    return (torch.cat(f), torch.cat(z), torch.cat(y)), val


def fit_ood(s: Session, final: torch.nn.Module, test_logits: torch.Tensor | None = None) -> dict[str, Any] | None:
    """"None of these" (ood.py): the detector fitted on a seeded sample of the training images'
    features, its threshold the --accept quantile of the validation split's scores (of the
    training sample's without one, said so), written into the run's checkpoints; the share of
    the test split accepted, and the accuracy on it, measured. None with --ood none."""
    cfg = s.cfg
    if cfg.ood == "none":
        return None
    import smallvision.ood as ood
    from smallvision.modelfile import write_into_checkpoint

    take = ood.fit_indices(len(s.data.train.x), cfg.seed, s.data.info.height * s.data.info.width)
    (feats, logits, labels), val = _ood_inputs(s, final, take)
    name, why = ood.detector_for(cfg.ood, len(feats), feats.shape[1],
                                 cross_fitted=val is None or len(val[0]) < ood.MIN_VALIDATION)
    det = ood.fit_detector(name, feats, labels, logits, final.head)
    q_scores, on = ood.threshold_scores(name, det, feats, labels, logits, final.head, val)
    doc: dict[str, Any] = {"detector": name, "accept": cfg.accept, "quantiles_on": on,
                           "quantile_images": len(q_scores), "fit_images": len(feats),
                           "quantiles": ood.quantiles(q_scores)}
    if why:
        doc["why"] = why
    doc["threshold"] = ood.threshold_at(doc, cfg.accept)
    tf, tz = ood.features_and_logits(final, s.data.test[0])
    accepted = ood.score_features(det, tf, tz) <= doc["threshold"]
    # right or wrong as the test figure counts it (with its test-time views: the logits predict gives);
    # the detector itself reads one view's features and logits, as predict's OOD score does
    right = (tz if test_logits is None else test_logits.cpu()).argmax(1) == s.data.test[1].cpu()
    doc["test_accepted_percent"] = round(100 * float(accepted.float().mean()), 2)
    doc["test_accuracy_accepted"] = round(100 * float(right[accepted].float().mean()), 2) if accepted.any() else None
    tensors = {f"ood.{k}": v for k, v in det.state_dict().items()}
    for name in (RunFolder.BEST, RunFolder.LAST):
        if (s.run / name).is_file():
            write_into_checkpoint(s.run / name, doc, key="ood", tensors=tensors)
    write_json(s.run / RunFolder.OOD, doc)  # (not attached to `final`: the session's resume state stays the model's)
    s.progress.log(f"none of these: {ood.describe(doc)}; accepts {doc['test_accepted_percent']:.1f} % of the test "
                   "split")
    return doc


# ----------------------------------------------------------------------------- fit
def fit(cfg: TrainConfig, runs_dir: str | Path = "runs", progress: Progress | None = None, command: str = "",
        resume: str | Path | tuple[Path, Any] | None = None, callbacks: list[Any] | None = None) -> TrainResult:
    """Train `cfg`; with `resume` (a run folder, or (folder, its loaded resume state)) continue
    that run from wherever it stopped: mid-epoch, or in its final test or report. `callbacks`:
    more objects with the hooks of engine/callbacks.py (tune's pruning is one)."""
    if resume is not None and not isinstance(resume, tuple):
        from smallvision.engine.resume import load_resume

        resume = (Path(resume), load_resume(Path(resume)))
    t0 = time.perf_counter()
    s = setup(cfg, runs_dir, progress, command, resume)
    s.stage_seconds["setup"] = time.perf_counter() - t0  # data (decoding, the feature pass), model, run folder
    callbacks = [ProgressBar(), PeriodicSave(cfg.checkpoint_every), *(callbacks or [])]
    with running(s, callbacks, lambda: distributed.shutdown(s.rt.dist)):
        try:
            if s.state.phase == "training":
                callbacks.append(StopOnSignal())
                if cfg.tensorboard:
                    callbacks.append(TensorBoardLog(str(s.run / RunFolder.TENSORBOARD)))
                epoch_loop(s, classifier_step, classifier_epoch_end, callbacks)
                _final_weights(s)
                s.enter_phase("trained")
            return finish(s)
        except torch.OutOfMemoryError:
            bs = cfg.batch_size or len(s.loader.x)
            raise UsageError(f"out of {s.rt.device.type.upper()} memory at batch size {bs}; try --batch-size "
                             f"{max(bs // 2, 1)} (the last good checkpoint is in {s.run})") from None


def _final_weights(s: Session) -> None:
    """After the loop: with --average-last the average replaces the selection (and is validated);
    without a validation split "best" is the final model (the tools expect the file)."""
    if s.avg is not None and int(s.avg.n_averaged):
        s.best_weights = {k: v.detach().clone() for k, v in s.avg.module.state_dict().items()}
        metrics = dict(s.state.history[-1])
        if s.val_xy is not None:  # what the summary reports as validation accuracy is the average's
            s.eval_model().load_state_dict(s.best_weights)
            val = _reduced(s, evaluate(s.judge(), *s.val_xy, autocast=s.rt.amp))
            st = s.state
            st.best_acc, st.best_loss, st.best_epoch = val.accuracy, val.loss, metrics["epoch"]
            metrics.update(val_accuracy=val.accuracy, val_loss=val.loss)
        if s.rt.dist.main:
            save_checkpoint(s.run / RunFolder.BEST, s.best_weights,
                            {**s.meta, "epoch": metrics["epoch"], "metrics": metrics,
                             "averaged_epochs": int(s.avg.n_averaged)})
    elif s.data.val is None and s.rt.dist.main:
        save_checkpoint(s.run / RunFolder.BEST, s.eval_model().state_dict(),
                        {**s.meta, "epoch": s.state.best_epoch, "metrics": s.state.history[-1]})
