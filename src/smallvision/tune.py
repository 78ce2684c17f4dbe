"""`smallvision tune`: choose settings on a validation split with Optuna; the test set is read once,
by the final run.

    from smallvision.tune import tune
    r = tune("mnist-fast", space="lr,weight_decay,label_smoothing,epochs=int:1:3", trials=20, time_budget=600)
    r.best_params, r.best_val, r.recipe_path, r.final["test_accuracy"]

Each trial is an ordinary run (its own folder under ``<tune folder>/trials``) of the recipe with
the trial's settings, trained on the training set minus a seeded validation split
(``--trial-val-size``; else the recipe's own ``val_size``, or 0.1 when it has none) and never tested (``test = false``): its score
is its best validation accuracy. Trials that fall behind the median of earlier trials of the same
length at the same point of their schedule are stopped early (Optuna's MedianPruner). ``time_budget`` bounds the search; each trial's
``max_time`` is what is left of it. Trials run side by side only when the machine has at least
4 cores (each then gets cores/jobs threads); on 2 cores one trial at a time is faster.

Trial 0 is the recipe's own settings (where they lie inside the searched ranges), so the result
is never worse than the recipe on validation. The best settings are written as a recipe file (``tuned.toml``: `--config` or `--recipe`-style
reading) and, unless ``final=False``, one final run trains them as the recipe would (its own
validation setting, usually none: the whole training set) and reads the test set, once.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smallvision.config import FIELDS, TrainConfig, to_toml, unknown_setting
from smallvision.errors import UsageError

DEFAULT_SPACE = "lr,weight_decay,label_smoothing"


@dataclass(frozen=True)
class Param:
    """One searched setting: kind float | log | int | choice."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    def describe(self) -> str:
        return f"{self.name}=" + ("|".join(map(str, self.choices)) if self.kind == "choice"
                                  else f"{self.kind}:{self.low:g}:{self.high:g}")


def _default_range(name: str, base: TrainConfig) -> Param:
    """Ranges around the recipe's own values for the settings people tune most."""
    defaults: dict[str, Param] = {
        "lr": Param("lr", "log", base.lr / 10, base.lr * 3),
        "weight_decay": Param("weight_decay", "log", 1e-6, 1e-2),
        "label_smoothing": Param("label_smoothing", "float", 0.0, 0.2),
        "epochs": Param("epochs", "int", base.epochs, 3 * base.epochs),
        "momentum": Param("momentum", "float", 0.8, 0.99),
        "batch_size": Param("batch_size", "choice", choices=(64, 128, 256)),
        "shift": Param("shift", "int", 0, 3),
        "warmup_epochs": Param("warmup_epochs", "float", 0.0, 2.0),
        "pct_start": Param("pct_start", "float", 0.1, 0.5),
        "ema": Param("ema", "choice", choices=(0.0, 0.99, 0.999)),
        "optimizer": Param("optimizer", "choice", choices=("sgd", "adamw")),
        "augment": Param("augment", "choice", choices=("none", "flip", "photo")),
    }
    if name not in defaults:
        raise UsageError(f"--space: {name} has no default range; give one: {name}=log:LOW:HIGH, {name}=float:LOW:HIGH, "
                         f"{name}=int:LOW:HIGH or {name}=A|B|C")
    return defaults[name]


def _number(text: str, name: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise UsageError(f"--space: {name}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise UsageError(f"--space: {name}: {text!r} is not a finite number")
    return v


def _choice(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_space(spec: str, base: TrainConfig) -> list[Param]:
    """'lr,weight_decay=log:1e-5:1e-2,epochs=int:1:3,optimizer=sgd|adamw' -> Params (names checked)."""
    params: list[Param] = []
    for item in filter(None, (i.strip() for i in spec.split(","))):
        name, _, rule = item.partition("=")
        name = name.strip().replace("-", "_")
        if name not in FIELDS:
            raise unknown_setting(name, "--space")
        if name in ("dataset", "data_args", "test", "val_size", "seed", "name", "recipe", "report"):
            raise UsageError(f"--space: {name} is not something to tune on validation")
        if not rule:
            params.append(_default_range(name, base))
            continue
        kind, _, bounds = rule.partition(":")
        if "|" in rule or (kind not in ("log", "float", "int") and not bounds):
            params.append(Param(name, "choice", choices=tuple(_choice(c) for c in rule.split("|"))))
            continue
        if kind not in ("log", "float", "int"):
            raise UsageError(f"--space: {name}: kind must be log, float or int (or A|B|C choices), got {kind!r}")
        lo_hi = bounds.split(":")
        if len(lo_hi) != 2:
            raise UsageError(f"--space: {name}={rule}: give {kind}:LOW:HIGH")
        low, high = (_number(b, name) for b in lo_hi)
        if not low < high or (kind == "log" and low <= 0):
            raise UsageError(f"--space: {name}: need LOW < HIGH{' and LOW > 0 for log' if kind == 'log' else ''}, "
                             f"got {low:g}:{high:g}")
        params.append(Param(name, kind, low, high))
    if not params:
        raise UsageError("--space names no settings")
    if len({p.name for p in params}) != len(params):
        raise UsageError("--space names a setting twice")
    return params


def suggest(trial: Any, p: Param) -> Any:
    if p.kind == "choice":
        return trial.suggest_categorical(p.name, list(p.choices))
    if p.kind == "int":
        return trial.suggest_int(p.name, int(p.low), int(p.high))
    return trial.suggest_float(p.name, p.low, p.high, log=p.kind == "log")


class _Pruning:
    """A loop callback: report each epoch's validation accuracy; stop a trial the pruner drops.

    The step reported is how far through its schedule the trial is, in thousandths (epoch 3 of 9:
    333), not the epoch: the median pruner compares trials at equal steps, and a one-cycle or cosine
    schedule of 7 epochs is at another learning rate at epoch 3 than one of 9. So trials of one
    length are compared at the same point of their schedule, and a length no finished trial had
    is not pruned against the others (a search over `epochs` pruned every other length early)."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def on_epoch_end(self, s: Any, row: dict[str, Any] | None, line: str) -> None:
        import optuna

        if row and row.get("val_accuracy") is not None:
            self.trial.report(row["val_accuracy"], schedule_step(row["epoch"], s.cfg.epochs))
            if row["epoch"] < s.cfg.epochs and self.trial.should_prune():  # at the last epoch nothing is saved
                raise optuna.TrialPruned(f"epoch {row['epoch']}: {row['val_accuracy']:.2f} % is below the median")


def schedule_step(epoch: int, epochs: int) -> int:
    """Epoch `epoch` of `epochs` as thousandths of the schedule (what the pruner compares)."""
    return round(1000 * epoch / epochs)


@dataclass
class TuneResult:
    folder: Path
    best_params: dict[str, Any]
    best_val: float
    trials: list[dict[str, Any]]
    recipe_path: Path
    final: dict[str, Any] | None = None
    search_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Job:
    """What a trial needs, picklable for worker processes."""

    base: dict[str, Any]
    params: list[Param]
    val_size: float
    trials_dir: str
    deadline: float  # time.time() at which the search ends (0: none)
    prune: bool
    threads: int


def _objective(job: _Job, trial: Any) -> float:
    from smallvision.config import from_dict, merge
    from smallvision.engine.progress import Progress
    from smallvision.engine.trainer import fit

    chosen = {p.name: suggest(trial, p) for p in job.params}
    left = job.deadline - time.time() if job.deadline else 0.0
    if job.deadline and left < 1:
        import optuna

        raise optuna.TrialPruned("the time budget is spent")
    settings = {**chosen, "val_size": job.val_size, "test": False, "report": False, "name": f"trial-{trial.number:03d}",
                "max_time": left if job.deadline else from_dict(job.base).max_time}
    if job.threads:
        settings["threads"] = job.threads
    cfg = merge(from_dict(job.base), settings, "tune").validate()
    quiet = Progress(enabled=False, stream=io.StringIO())  # tune prints one line per trial instead
    res = fit(cfg, runs_dir=job.trials_dir, progress=quiet, callbacks=[_Pruning(trial)] if job.prune else [])
    trial.set_user_attr("seconds", res.summary["train_seconds"])
    trial.set_user_attr("run", res.summary["run"])
    return float(res.summary["val_accuracy"])


def _worker(job: _Job, storage_path: str, n_trials: int) -> None:
    """One worker process of a parallel search: the shared study, trials until the total is reached."""
    import optuna
    from optuna.study import MaxTrialsCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="tune", storage=_storage(storage_path), sampler=_sampler(os.getpid()),
                              pruner=_pruner(job.prune))
    timeout = max(job.deadline - time.time(), 1) if job.deadline else None
    study.optimize(lambda t: _objective(job, t), timeout=timeout,
                   callbacks=[MaxTrialsCallback(n_trials, states=None)])


def _storage(path: str) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(path))


def _sampler(seed: int) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)


def _pruner(prune: bool) -> Any:
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1) if prune else optuna.pruners.NopPruner()


def _baseline(base: TrainConfig, params: list[Param]) -> dict[str, Any]:
    """The recipe's own values of the searched settings that lie inside their ranges."""
    out = {}
    for p in params:
        v = getattr(base, p.name)
        if (p.kind == "choice" and v in p.choices) or (p.kind != "choice" and p.low <= v <= p.high):
            out[p.name] = v
    return out


def plan_jobs(jobs: int, cores: int | None = None) -> tuple[int, int]:
    """(parallel trials, threads each). 0 = auto: one trial per 2 cores from 4 cores up, else 1."""
    cores = cores or os.cpu_count() or 1
    if jobs < 0:
        raise UsageError(f"--jobs must be ≥ 0, got {jobs}")
    n = jobs or (cores // 2 if cores >= 4 else 1)
    n = max(1, min(n, cores))
    return n, (max(1, cores // n) if n > 1 else 0)


def tune(recipe: str | None = None, config: str | Path | TrainConfig | None = None, space: str = DEFAULT_SPACE, trials: int = 20,
         time_budget: float = 0.0, trial_val_size: float | None = None, runs_dir: str | Path = "runs", name: str = "",
         seed: int = 0, jobs: int = 0, final: bool = True, prune: bool = True, out: str | Path | None = None,
         log: Any = print, **overrides: Any) -> TuneResult:
    """Search `space` on validation; write the best settings as a recipe; train and test them once.
    `trial_val_size` is the trials' validation split (default: the recipe's own, or 0.1 when it has
    none); settings go in `overrides` (a ``val_size`` there changes the recipe, and so the final
    run, too)."""
    import optuna

    from smallvision.config import merge
    from smallvision.engine.trainer import fit
    from smallvision.recipes import resolve
    from smallvision.runfolder import RunFolder

    if trials < 1:
        raise UsageError(f"--trials must be ≥ 1, got {trials}")
    if time_budget < 0:
        raise UsageError(f"--time-budget must be ≥ 0 seconds, got {time_budget}")
    base = resolve(recipe, config, **overrides)
    params = parse_space(space, base)
    trial_val = trial_val_size if trial_val_size is not None else (base.val_size if base.val_size > 0 else 0.1)
    if not 0 < trial_val < 1 and not (trial_val >= 1 and float(trial_val).is_integer()):
        raise UsageError(f"--trial-val-size must be a fraction in (0, 1) or a count of images ≥ 1, got {trial_val:g}")
    n_jobs, threads = plan_jobs(jobs)
    stem = base.recipe or f"{base.spec.name}-{base.model}"
    folder = RunFolder.create(runs_dir, name or f"tune-{stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        storage_path = str(folder / RunFolder.STUDY)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize", study_name="tune", storage=_storage(storage_path),
                                    sampler=_sampler(seed), pruner=_pruner(prune))
        baseline = _baseline(base, params)
        if baseline:  # trial 0: the recipe's own settings, so the best is never worse than them on validation
            study.enqueue_trial(baseline, skip_if_exists=True)
        job = _Job(base.to_dict(), params, trial_val, str(folder / "trials"),
                   time.time() + time_budget if time_budget else 0.0, prune, threads)
        log(f"tune {folder.path}: {trials} trials of {base.recipe or base.model} on {base.dataset}, "
            f"{', '.join(p.describe() for p in params)}; validation {trial_val:g} of the training set; "
            f"{n_jobs} at a time" + (f", {time_budget:g} s budget" if time_budget else ""))
        t0 = time.perf_counter()

        def progress(study: Any, t: Any) -> None:
            v = "pruned" if t.state.name == "PRUNED" else (f"{t.value:.2f} %" if t.value is not None else t.state.name)
            log(f"trial {t.number:3d}: {v:>8}  {json.dumps(t.params)}")

        if n_jobs == 1:
            study.optimize(lambda t: _objective(job, t), n_trials=trials, timeout=time_budget or None,
                           callbacks=[progress])
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            procs = [ctx.Process(target=_worker, args=(job, storage_path, trials)) for _ in range(n_jobs)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            study = optuna.load_study(study_name="tune", storage=_storage(storage_path))
        search_seconds = time.perf_counter() - t0
        done = [t for t in study.trials if t.state.name == "COMPLETE"]
        if not done:
            raise UsageError(f"{folder}: no trial completed (time budget {time_budget:g} s too short?)")
        best = study.best_trial
        rows = [{"trial": t.number, "state": t.state.name.lower(), "val_accuracy": t.value, **t.params,
                 "train_seconds": t.user_attrs.get("seconds")} for t in study.trials]
        (folder / RunFolder.TRIALS).write_text(json.dumps(rows, indent=1))
        best_cfg = merge(base, dict(best.params), "tune").validate()
        description = (f"tuned by `smallvision tune` from {base.recipe or 'the given settings'} on a {trial_val:g} "
                       f"validation split: {best.value:.2f} % validation accuracy (trial {best.number} of {len(rows)}; "
                       f"searched {', '.join(p.describe() for p in params)}); the test set was not read")
        recipe_path = Path(out) if out else folder / "tuned.toml"
        recipe_path.write_text(to_toml(best_cfg.__class__(**{**best_cfg.to_dict(), "name": ""}), description))
        log(f"best: {best.value:.2f} % validation accuracy with {json.dumps(best.params)} -> {recipe_path}")
        result = TuneResult(folder.path, dict(best.params), float(best.value), rows, recipe_path,
                            search_seconds=round(search_seconds, 1), extra={"val": trial_val})
        if final:
            res = fit(merge(best_cfg, {"name": f"{folder.name}-final"}, "tune").validate(), runs_dir=folder.path)
            result.final = res.summary
            log(f"final run (the test set read once): {res.summary['test_accuracy']:.2f} % test accuracy, "
                f"{res.summary['train_seconds']:.1f} s -> {res.run_dir}")
        summary = {"folder": str(folder.path), "best_params": result.best_params, "best_val_accuracy": result.best_val,
                   "trials": len(rows), "completed": len(done),
                   "pruned": sum(r["state"] == "pruned" for r in rows), "search_seconds": result.search_seconds,
                   "val_size": trial_val, "space": [p.describe() for p in params], "recipe": str(recipe_path),
                   "final": result.final}
        (folder / RunFolder.SUMMARY).write_text(json.dumps(summary, indent=1))
        return result
    finally:
        folder.unlock()
