"""The library API behind the CLI, for notebooks and scripts.

    import smallvision as sv
    result = sv.train("mnist-fast", epochs=1)           # a recipe plus overrides
    print(result.summary["test_accuracy"], result.run_dir)
    sv.evaluate(result.run_dir)                         # or any checkpoint, on any compatible data
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smallvision.config import TrainConfig, merge
from smallvision.engine.trainer import TrainResult
from smallvision.errors import UsageError
from smallvision.recipes import resolve
from smallvision.runfolder import RunFolder

make_config = resolve  # the settings a run would use (recipes.resolve), for notebooks and the CLI


def train(recipe: str | None = None, runs_dir: str | Path = "runs", progress: bool = False, command: str = "",
          config: str | Path | None = None, callbacks: list[Any] | None = None, **overrides: Any) -> TrainResult:
    """Train a recipe (or the defaults, or a config file) with keyword overrides of any `TrainConfig`
    field. `command` is recorded in config.json (the CLI passes the command line that ran);
    `callbacks`: objects with the loop's hooks (engine/callbacks.py)."""
    return _fit(make_config(recipe, config, **overrides), runs_dir, progress, command, callbacks)


def _fit(cfg: TrainConfig, runs_dir: str | Path, progress: bool, command: str,
         callbacks: list[Any] | None = None) -> TrainResult:
    """One run of settings already resolved and validated (`make_config`): nothing re-resolves them."""
    from smallvision.engine.progress import Progress
    from smallvision.engine.trainer import fit

    return fit(cfg, runs_dir=runs_dir, progress=Progress(enabled=progress), command=command, callbacks=callbacks)


def _ensemble_figures(logits: list[Any], y: Any, split: str) -> dict[str, Any]:
    """Accuracy and loss of the mean of the members' probabilities, each member's accuracy, and how
    alike the members are: averaging seldom fixes an image that every member gets wrong."""
    import statistics

    import torch

    multi = y.ndim == 2  # multi-label: the members' sigmoids averaged; "wrong" = not an exact match at 0.5
    prob = (lambda lg: lg.float().sigmoid()) if multi else (lambda lg: lg.float().softmax(1))  # noqa: E731
    miss = (lambda p: ((p >= 0.5) != (y > 0.5)).any(1)) if multi else (lambda p: p.argmax(1) != y)  # noqa: E731
    probs = torch.stack([prob(lg) for lg in logits]).mean(0)
    wrong = torch.stack([miss(prob(lg)) for lg in logits])  # (K, N)
    accs = [round(100.0 * float((~w).float().mean()), 4) for w in wrong]
    loss = (torch.nn.functional.binary_cross_entropy(probs.clamp(1e-7, 1 - 1e-7), y.float()) if multi
            else torch.nn.functional.nll_loss(probs.clamp_min(1e-12).log(), y))
    return {
        f"{split}_accuracy": round(100.0 * float((~miss(probs)).float().mean()), 4),
        f"{split}_loss": round(float(loss), 6),
        "member_accuracy_mean": round(statistics.mean(accs), 4), "member_accuracy_std": round(statistics.stdev(accs), 4),
        "member_accuracy_min": min(accs), "member_accuracies": accs,
        "errors": int(miss(probs).sum()), "errors_of_every_member": int(wrong.all(0).sum()),
        "errors_of_some_member": int(wrong.any(0).sum()),
    }


def train_ensemble(recipe: str | None = None, k: int = 5, runs_dir: str | Path = "runs", progress: bool = False,
                   command: str = "", config: str | Path | TrainConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """Train `k` members of a recipe (seeds seed, seed+1, ...) and test the mean of their probabilities.

    Members are ordinary runs in ``runs_dir/<name>/member-<i>/`` (evaluate, predict and compare take
    them); the ensemble's figures go to ``runs_dir/<name>/summary.json``. Like every run, members are
    chosen and stopped on validation only; the test set is read once per member at the end.
    """
    return _ensemble(make_config(recipe, config, **overrides), k, runs_dir, progress, command)


def _ensemble(cfg: TrainConfig, k: int, runs_dir: str | Path, progress: bool, command: str) -> dict[str, Any]:
    """`train_ensemble` of settings already resolved and validated (`make_config`)."""
    from smallvision.data import load_dataset
    from smallvision.engine.progress import Progress
    from smallvision.engine.run import default_run_name
    from smallvision.engine.trainer import fit
    from smallvision.io import write_json

    if k < 2:
        raise UsageError(f"--ensemble takes K ≥ 2 members, got {k}")
    folder = RunFolder.create(runs_dir, default_run_name(cfg)).path
    members = []
    for i in range(k):
        member = merge(cfg, {"seed": cfg.seed + i, "name": f"member-{i + 1}"}, "ensemble").validate()
        members.append(fit(member, runs_dir=folder, progress=Progress(enabled=progress), command=command))
    y = load_dataset(cfg.dataset, cfg.data_dir, cfg.data_args).test_y
    summary = {
        "run": folder.name, "run_dir": str(folder), "recipe": cfg.recipe, "members": k,
        **_ensemble_figures([m.test_logits for m in members], y, "test"),  # type: ignore[misc]
        "train_seconds": round(sum(m.summary["train_seconds"] for m in members), 3),
        "member_runs": [str(m.run_dir) for m in members],
    }
    write_json(folder / RunFolder.SUMMARY, summary)
    return summary


def evaluate_ensemble(checkpoints: list[str | Path], dataset: str | None = None, split: str = "test",
                      data_dir: str | None = None, device: str = "auto", batch_size: int = 2000,
                      data_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Test the mean of several trained models' probabilities (run folders or checkpoints of any
    recipes and architectures trained on the same classes), each tested as its own run tested
    (its precision, memory format and TTA views). What ``--ensemble K`` reports, for runs you already have."""

    if len(checkpoints) < 2:
        raise UsageError(f"an ensemble takes 2 or more checkpoints, got {len(checkpoints)}")
    evs = [_evaluate_checkpoint(c, dataset, split, data_dir, device, batch_size, True, data_args) for c in checkpoints]
    first = evs[0]
    for ev in evs[1:]:
        if ev["spec"] != first["spec"] and dataset is None:
            raise UsageError(f"{ev['ckpt']} was trained on {ev['spec']}, {first['ckpt']} on {first['spec']}; "
                             f"name the data set to test on with --dataset")
        if ev["res"].logits.shape[1] != first["res"].logits.shape[1]:
            raise UsageError(f"{ev['ckpt']} predicts {ev['res'].logits.shape[1]} classes, {first['ckpt']} "
                             f"{first['res'].logits.shape[1]}")
        if len(ev["y"]) != len(first["y"]) or not bool((ev["y"] == first["y"]).all()):  # --split val of other seeds
            raise UsageError("--split val: these runs held out different validation images; use --split test")
    return {"checkpoints": [str(ev["ckpt"]) for ev in evs], "dataset": first["spec"], "split": split,
            "images": first["res"].n, "members": len(evs),
            **_ensemble_figures([ev["res"].logits.cpu() for ev in evs], first["y"].cpu(), split)}


def resume(run_dir: str | Path, progress: bool = False, command: str = "", **overrides: Any) -> TrainResult:
    """Continue a stopped run exactly (model, optimiser, schedule, RNG, data order, step in epoch).

    `overrides` may only touch settings that do not change the result (max_time, threads, ...).
    """
    return _continue(run_dir, progress, command, **overrides)


def _continue(run_dir: str | Path, progress: bool = False, command: str = "", **overrides: Any) -> TrainResult:
    from smallvision.config import from_dict
    from smallvision.engine.progress import Progress
    from smallvision.engine.resume import load_resume
    from smallvision.engine.trainer import fit

    saved = load_resume(Path(run_dir))  # read once: fit restores from it
    cfg = merge(from_dict(saved[1]["config"]), overrides, "settings").validate()
    return fit(cfg, progress=Progress(enabled=progress), command=command, resume=(Path(run_dir), saved))


def train_command(cfg: TrainConfig | None = None, *, resume: str | Path | None = None, ensemble: int = 0,
                  nproc: int = 1, runs_dir: str | Path = "runs", progress: bool = False, command: str = "",
                  argv: list[str] | None = None, **overrides: Any) -> tuple[str, dict[str, Any]]:
    """What ``smallvision train`` does, for the CLI and notebooks alike: several processes
    (`nproc` > 1: torchrun is started on this machine), `resume` a stopped run, an `ensemble` of
    K seeds, or one run of `cfg`, the settings resolved and validated once (`make_config`; the
    CLI resolves them before it calls this, so bad settings fail before any process starts).
    `overrides`: with `resume`, the settings that may change on a resume (max_time, threads...).
    Returns (what ran, its summary); for torchrun the summary is ``{"returncode": N}`` (rank 0
    prints the run's own). `argv`: the command's own arguments, which torchrun's processes repeat
    (`engine.launch` drops --nproc); from Python, the settings are written to
    ``runs_dir/launch-<time>.toml`` and those are the arguments."""
    import os

    if resume is not None and cfg is not None:
        raise UsageError("--resume continues a run with its own settings; drop --recipe/--config")
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        from smallvision.engine.launch import launch

        if resume is not None and not (Path(resume) / RunFolder.RESUME).is_file():
            raise UsageError(f"{resume}: nothing to resume (no resume.safetensors); was it trained by smallvision?")
        return "torchrun", {"returncode": launch(argv or _launch_args(cfg, resume, runs_dir), nproc)}
    if resume is not None:
        result = _continue(resume, progress=progress, command=command, **overrides)
        return f"run {result.run_dir}", result.summary
    cfg = cfg if cfg is not None else make_config(**overrides)
    if ensemble:
        summary = _ensemble(cfg, ensemble, runs_dir, progress, command)
        return f"ensemble {summary['run_dir']}", summary
    result = _fit(cfg, runs_dir, progress, command)
    return f"run {result.run_dir}", result.summary


def _launch_args(cfg: TrainConfig | None, resume: str | Path | None, runs_dir: str | Path) -> list[str]:
    """The command torchrun's processes run when Python (not a command line) asked for several:
    resume the run, or train the settings written to ``runs_dir/launch-<time>.toml``."""
    if resume is not None:
        return ["train", "--resume", str(resume)]
    import time

    from smallvision.config import to_toml

    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    file = Path(runs_dir) / f"launch-{time.strftime('%Y%m%d-%H%M%S')}.toml"
    file.write_text(to_toml(cfg or make_config(), "settings of a torchrun launch from Python"), encoding="utf-8")
    return ["train", "--config", str(file), "--runs-dir", str(runs_dir), "--json"]


def _evaluate_checkpoint(checkpoint: str | Path, dataset: str | None, split: str, data_dir: str | None,
                         device: str, batch_size: int, keep_logits: bool,
                         data_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """One checkpoint on a data set's split, tested as its run tested: what evaluate and
    evaluate_ensemble share."""
    import torch

    from smallvision.config import from_dict
    from smallvision.data import DatasetInfo, load_dataset, split_validation
    from smallvision.data.loader import as_model_input, training_subset
    from smallvision.engine.device import resolve_device
    from smallvision.engine.evaluate import evaluate as run_eval
    from smallvision.modelfile import load_model, resolve

    if split not in ("test", "val"):
        raise UsageError(f"--split must be test or val, got {split!r}")
    dev = resolve_device(device)
    ckpt = resolve(checkpoint)
    model, meta = load_model(ckpt, dev)
    cfg = from_dict(meta.get("config", {}))
    spec = dataset or cfg.dataset
    # the run's own data options, unless another data set (with its own options) is named
    opts = data_args if data_args is not None else (cfg.data_args if dataset is None else None)
    data = load_dataset(spec, data_dir if data_dir is not None else cfg.data_dir, opts)
    want = tuple(model.input_shape)
    if data.info.input_shape != want:
        raise UsageError(f"{spec}: images are {'×'.join(map(str, data.info.input_shape))} but the model "
                         f"takes {'×'.join(map(str, want))}")
    if bool(meta["dataset"].get("multilabel")) != data.info.multilabel:
        kinds = ("single-label", "multi-label")
        raise UsageError(f"{spec} is a {kinds[data.info.multilabel]} set but the model is "
                         f"{kinds[bool(meta['dataset'].get('multilabel'))]}")
    if data.info.num_classes > model.num_classes:
        raise UsageError(f"{spec}: {data.info.num_classes} classes but the model predicts {model.num_classes}")
    if split == "val":
        if dataset and dataset != cfg.dataset:
            raise UsageError("--split val re-creates the training run's validation split; it needs the run's data set")
        x, y = data.train_x, data.train_y
        x, y = training_subset(x, y, cfg.train_limit, cfg.seed)  # the run's own subset, then its split
        _, va = split_validation(len(x), cfg.val_size, cfg.seed)
        if not len(va):
            raise UsageError(f"{ckpt}: the run had no validation split (--val-size 0)")
        x, y = x[va], y[va]
    else:
        x, y = data.test_x, data.test_y
    info = DatasetInfo.from_dict(meta["dataset"])
    # tested as the run's final test: fp32 (whatever the training precision: the figure predict,
    # serve and ONNX give) in the run's memory format, so the figure matches the run's summary
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    xs = as_model_input(x, info.mean, info.std, dev, channels_last=cfg.channels_last)
    res = run_eval(model, xs, y.to(dev), batch_size=batch_size, keep_logits=keep_logits)
    return {"ckpt": ckpt, "spec": spec, "meta": meta, "data": data, "res": res, "y": y, "xs": xs, "model": model,
            "device": dev}


def evaluate(checkpoint: str | Path, dataset: str | None = None, split: str = "test", data_dir: str | None = None,
             device: str = "auto", batch_size: int = 2000, report: bool = True,
             out: str | Path | None = None, data_args: dict[str, Any] | None = None,
             accept: float | None = None) -> dict[str, Any]:
    """Accuracy and loss of a checkpoint (or a run folder's best one) on a data set's split.
    A model with an OOD detector also reports the share of the split it accepts (the rest it
    answers "none of these", at its threshold or the one accepting `accept` of its validation
    images) and the accuracy on the accepted images.

    The data set defaults to the one the model was trained on; any data set with the same
    image shape and class count works. ``split='val'`` re-creates the run's own seeded split.
    With `report`, writes the same report as training does into `out` (default: an
    ``eval-<data>-<split>`` folder beside the checkpoint).
    """

    from smallvision.data import DatasetInfo

    ev = _evaluate_checkpoint(checkpoint, dataset, split, data_dir, device, batch_size, True, data_args)
    ckpt, spec, meta, data, res, y, xs = ev["ckpt"], ev["spec"], ev["meta"], ev["data"], ev["res"], ev["y"], ev["xs"]
    model, dev = ev["model"], ev["device"]
    info = DatasetInfo.from_dict(meta["dataset"])
    out_doc = {"checkpoint": str(ckpt), "dataset": spec, "split": split, "images": res.n,
               f"{split}_accuracy": round(res.accuracy, 4), f"{split}_loss": round(res.loss, 6), "model": meta["model"],
               "temperature": round(float(model.temperature), 6)}  # the loss is that of the calibrated probabilities
    if getattr(model, "ood", None) is not None and isinstance(meta.get("ood"), dict):
        out_doc.update(_ood_figures(model, meta["ood"], xs, y, res.logits, split, accept))
    if info.multilabel:  # scored at the run's own thresholds, as predict decides
        from smallvision.multilabel import metrics, thresholds_of

        values = thresholds_of(meta)
        m = metrics(res.logits, y, values)
        out_doc.update({f"{split}_accuracy": m["exact_match"], f"{split}_macro_f1": m["macro_f1"],
                        f"{split}_micro_f1": m["micro_f1"], f"{split}_map": m["map"], "thresholds": values})
        out_doc.pop("temperature")
        if report:
            from smallvision.report.build import RunRecord, write_multilabel_report

            tag = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)
            folder = Path(out) if out else ckpt.parent / f"eval-{tag}-{split}"
            chosen = (meta.get("thresholds") or {}).get("chosen", "0.5 (the checkpoint carries none)")
            write_multilabel_report(folder, RunRecord(split, out_doc, (), meta.get("config"), _reproduce(meta), str(dev)),
                                    title=f"{meta['model']} ({ckpt.parent.name}/{ckpt.name}) on {spec} {split}",
                                    info=info, logits=res.logits, y=y, thresholds={"values": values, "chosen": chosen,
                                                                                   "test": m},
                                    images=xs)
            out_doc["report"] = str(folder / RunFolder.REPORT)
        return out_doc
    if report:
        from smallvision.explain import heatmaps
        from smallvision.extras import installed
        from smallvision.report import classification_metrics, write_report
        from smallvision.report.build import RunRecord

        tag = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)
        folder = Path(out) if out else ckpt.parent / f"eval-{tag}-{split}"
        if data.info.class_names and len(data.info.class_names) == len(info.class_names):
            info = DatasetInfo.from_dict({**info.to_dict(), "class_names": list(data.info.class_names)})
        m = classification_metrics(res.logits, y, model.num_classes)
        write_report(folder, RunRecord(split, out_doc, (), meta.get("config"), _reproduce(meta), str(dev)),
                     title=f"{meta['model']} ({ckpt.parent.name}/{ckpt.name}) on {spec} {split}", info=info,
                     metrics=m, images=xs,
                     heatmap_fn=(lambda x, t: heatmaps(model, x.float(), t)) if installed("captum") else None)
        out_doc["report"] = str(folder / RunFolder.REPORT)
    return out_doc


def _ood_figures(model: Any, doc: dict[str, Any], xs: Any, y: Any, logits: Any, split: str,
                 accept: float | None) -> dict[str, Any]:
    """What "none of these" does on a split: the share accepted and the accuracy on it."""
    from smallvision.ood import features_and_logits, score_features, threshold_at

    thr = threshold_at(doc, accept)
    f, z = features_and_logits(model, xs)
    ok = score_features(model.ood, f, z) <= thr
    right = logits.argmax(1).cpu() == y.cpu()
    return {"ood": f"{doc['detector']}, threshold {thr:.4g} (accepting {accept or doc['accept']:.0%} of "
                   f"{doc['quantile_images']} {doc['quantiles_on']} images)",
            f"{split}_accepted_percent": round(100 * float(ok.float().mean()), 2),
            f"{split}_accuracy_accepted": round(100 * float(right[ok].float().mean()), 4) if ok.any() else None}


def _reproduce(meta: dict[str, Any]) -> str:
    """The command that trains the checkpoint again, from the settings it carries ("" when none)."""
    from smallvision.engine.trainer import reproduce_command

    return reproduce_command(meta["config"]) if meta.get("config") else ""


def calibrate(run: str | Path, device: str = "auto", report: bool = True) -> dict[str, Any]:
    """Temperature scaling for a finished run (calibration.py): T fitted on the run's own validation
    split (re-created from its config and seed) and written into its checkpoints; the test split's
    errors before/after reported next to it. UsageError when the run held no validation split out."""
    from smallvision.calibration import reliability, summarise, why_not
    from smallvision.io import write_json
    from smallvision.modelfile import resolve, write_into_checkpoint
    from smallvision.runfolder import RunFolder

    ckpt = resolve(run)
    try:
        val = _evaluate_checkpoint(ckpt, None, "val", None, device, 0, True)
    except UsageError as e:
        if "no validation split" in str(e):
            raise UsageError(f"{run}: the run held no validation split out, so there is nothing honest to "
                             "calibrate on; train it again with --val-size 0.05 (calibration then runs by itself)") from None
        raise
    if val["meta"]["dataset"].get("multilabel"):
        raise UsageError(f"{run}: a multi-label run; its probabilities are per-class sigmoids, and its decision "
                         "thresholds were chosen on validation when it trained (thresholds.json), not a temperature")
    t_old = float(val["model"].temperature)  # the logits came out divided by any earlier T: undo it
    if reason := why_not(val["res"].logits, val["y"]):
        raise UsageError(f"{run}: not calibrated: {reason}; a larger --val-size gives it more to go on")
    test = _evaluate_checkpoint(ckpt, None, "test", None, device, 0, True)
    doc = summarise(val["res"].logits * t_old, val["y"], test["res"].logits * t_old, test["y"])
    folder = ckpt.parent
    for name in (RunFolder.BEST, RunFolder.LAST):
        if (folder / name).is_file():
            write_into_checkpoint(folder / name, doc)
    if report:
        from smallvision.report.plots import plot_reliability

        z, y = test["res"].logits * t_old, test["y"]
        plot_reliability(reliability(z, y), reliability(z / doc["temperature"], y), folder / RunFolder.RELIABILITY,
                         f"test split, T = {doc['temperature']:.3f}")
        doc["figure"] = str(folder / RunFolder.RELIABILITY)
    write_json(folder / RunFolder.CALIBRATION, doc)
    return doc


def refuse_like(run: str | Path, examples: str | Path, device: str = "auto") -> dict[str, Any]:
    """Tighten a run's "none of these" threshold with a folder of examples of what it should refuse
    (ood.accept_from_examples): the detector stays; the operating point moves down from the run's
    `accept` as far as refusing more of the examples is worth refusing more of its own images
    (never below ood.MIN_ACCEPT). Written into its checkpoints and ood.json; the shares before and
    after are returned (and a one-line error when the run has no detector or the folder no images)."""
    import torch

    import smallvision.ood as ood
    from smallvision.io import write_json
    from smallvision.modelfile import resolve, write_into_checkpoint
    from smallvision.predict import Predictor, expand_inputs
    from smallvision.runfolder import RunFolder

    ckpt = resolve(run)
    p = Predictor.from_checkpoint(ckpt, device)
    if p.ood is None or getattr(p.model, "ood", None) is None:
        raise UsageError(f"{run}: this model carries no \"none of these\" detector (multi-label, an exported file, "
                         "or trained with --set ood=none)")
    if not Path(examples).is_dir():
        raise UsageError(f"{examples}: no such folder (give a folder of images the model should refuse)")
    xs, files, skipped = p.preprocess_files(expand_inputs([str(examples)]))
    if not files:
        raise UsageError(f"{examples}: none of its images could be read ({skipped[0]})")
    f, z = ood.features_and_logits(p.model, torch.stack(xs))
    out = ood.score_features(p.model.ood, f, z)
    # the training-time test figures were measured at the old threshold: they would mislead beside the new one
    doc = {k: v for k, v in p.ood.items() if k not in ("examples", "test_accepted_percent", "test_accuracy_accepted")}
    base = float(doc.get("accept_before_examples", doc["accept"]))
    doc["accept"] = base  # examples are judged from the run's own operating point, not an earlier example set's
    doc["threshold"] = ood.threshold_at(doc, base)
    before = 100 * float((out <= doc["threshold"]).float().mean())
    accept = ood.accept_from_examples(doc, out)
    doc.update(accept=accept, accept_before_examples=base, threshold=ood.threshold_at(doc, accept))
    after = 100 * float((out <= doc["threshold"]).float().mean())
    doc["examples"] = {"folder": str(examples), "images": len(files), "accepted_percent": round(after, 2),
                       "accepted_percent_before": round(before, 2)}
    folder = ckpt.parent
    targets = {ckpt} | ({folder / n for n in (RunFolder.BEST, RunFolder.LAST) if (folder / n).is_file()}
                        if Path(run).is_dir() else set())
    for target in sorted(targets):
        write_into_checkpoint(target, doc, key="ood")
    if Path(run).is_dir() and (folder / RunFolder.OOD).is_file():
        write_json(folder / RunFolder.OOD, doc)
    return {"run": str(run), "detector": doc["detector"], "examples": len(files), "accept_before": base,
            "accept": accept, "threshold": doc["threshold"], "examples_accepted_percent_before": round(before, 2),
            "examples_accepted_percent": round(after, 2)}


def run_splits(run: str | Path, device: str = "auto") -> dict[str, Any]:
    """A finished run's model and its own data, re-created from its config and seed: ``model``,
    ``meta``, and ``train``/``val``/``test`` as (normalised inputs, labels) on the device (``val``
    None when the run held none out). What the OOD benchmark and `ood` refits read."""
    from smallvision.config import from_dict
    from smallvision.data import DatasetInfo, load_dataset, split_validation
    from smallvision.data.loader import as_model_input, training_subset
    from smallvision.engine.device import resolve_device
    from smallvision.modelfile import load_model
    from smallvision.modelfile import resolve as resolve_checkpoint

    dev = resolve_device(device)
    model, meta = load_model(resolve_checkpoint(run), dev)
    cfg = from_dict(meta.get("config", {}))
    data = load_dataset(cfg.dataset, cfg.data_dir, cfg.data_args)
    x, y = training_subset(data.train_x, data.train_y, cfg.train_limit, cfg.seed)
    tr, va = split_validation(len(x), cfg.val_size, cfg.seed)
    info = DatasetInfo.from_dict(meta["dataset"])

    def ready(xs: Any, ys: Any) -> tuple[Any, Any]:
        return as_model_input(xs, info.mean, info.std, dev), ys.to(dev)

    return {"model": model, "meta": meta, "config": cfg, "train": ready(x[tr], y[tr]),
            "val": ready(x[va], y[va]) if len(va) else None, "test": ready(data.test_x, data.test_y)}
