"""`smallvision` command line. Thin: parses flags, calls `smallvision.api`, prints results.

Heavy imports (torch) happen inside commands so ``smallvision --help`` starts fast. User
errors print one line and exit 2 (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

app = typer.Typer(
    name="smallvision",
    help="Train, evaluate and compare small image classifiers (MNIST, Fashion-MNIST, CIFAR, folders).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_DEBUG = {"on": False}


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False) -> None:
    _DEBUG["on"] = debug or _DEBUG["on"]


def _print_table(rows: list[tuple[str, str]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("name", no_wrap=True)
    t.add_column("description")
    for name, desc in rows:
        t.add_row(name, desc)
    Console().print(t)


@app.command()
def models() -> None:
    """List the registered models."""
    from smallvision.models import MODELS

    _print_table([(e.name, e.description) for e in MODELS], "models")


@app.command()
def datasets(
    where: Annotated[Optional[str], typer.Option(help="Say where a data set's files are found (no download); exit 2 if nowhere.")] = None,
    data_dir: Annotated[Optional[str], typer.Option()] = None,
) -> None:
    """List the registered data sets (NAME or NAME:ARG)."""
    from smallvision.data import DATASETS

    if where:
        from smallvision.data import load_dataset

        os.environ["SMALLVISION_OFFLINE"] = "1"
        d = load_dataset(where, data_dir)
        print(f"{where}: {d.source} ({len(d.train_x)} train, {len(d.test_x)} test, {d.info.num_classes} classes)")
        return
    _print_table([(e.name, e.description) for e in DATASETS], "data sets")


@app.command()
def recipes() -> None:
    """List the recipes (use with: smallvision train --recipe NAME)."""
    from smallvision.recipes import recipe_doc, recipe_names

    _print_table([(n, recipe_doc(n).get("description", "")) for n in recipe_names()], "recipes")


def _overrides(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v is not None}


def _parse_model_args(items: list[str] | None) -> dict[str, Any] | None:
    from smallvision.errors import UsageError

    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, eq, val = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--model-arg takes KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(val)
        except json.JSONDecodeError:
            out[key] = val
    return out


def _emit(summary: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(summary))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, show_header=False)
    for k, v in summary.items():
        if v is not None and v != "":
            t.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    Console().print(t)


@app.command()
def train(
    recipe: Annotated[Optional[str], typer.Option(help="A named recipe (see `smallvision recipes`); flags override it.")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue a stopped run folder exactly where it stopped.")] = None,
    checkpoint_every: Annotated[Optional[str], typer.Option(help="Also save resume state every N steps (500) or seconds (60s).")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="mnist, fashion-mnist, kmnist, cifar10, digits, idx:DIR, csv:TRAIN[,TEST], fake[:...]")] = None,
    data_dir: Annotated[Optional[str], typer.Option(help="Folder searched first for data files.")] = None,
    model: Annotated[Optional[str], typer.Option(help="A registered model (see `smallvision models`).")] = None,
    model_arg: Annotated[Optional[list[str]], typer.Option(help="Model option KEY=VALUE (JSON value), repeatable.")] = None,
    freeze: Annotated[Optional[bool], typer.Option("--freeze/--no-freeze", help="Transfer learning: train only the new head.")] = None,
    unfreeze_after: Annotated[Optional[int], typer.Option(help="With --freeze: train everything after this epoch.")] = None,
    backbone_lr: Annotated[Optional[float], typer.Option(help="Learning-rate multiplier for the backbone.")] = None,
    cache_features: Annotated[Optional[bool], typer.Option("--cache-features/--no-cache-features", help="With --freeze: run the backbone once, train the head on cached features.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (full-batch: steps).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size; 0 = full batch.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate.")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="sgd, adam, adamw, adadelta, rmsprop")] = None,
    momentum: Annotated[Optional[float], typer.Option()] = None,
    nesterov: Annotated[Optional[bool], typer.Option("--nesterov/--no-nesterov")] = None,
    weight_decay: Annotated[Optional[float], typer.Option()] = None,
    label_smoothing: Annotated[Optional[float], typer.Option()] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="constant, step, multistep, exponential, plateau, onecycle, cosine")] = None,
    warmup_epochs: Annotated[Optional[float], typer.Option()] = None,
    step_size: Annotated[Optional[int], typer.Option(help="step scheduler: epochs per decay")] = None,
    gamma: Annotated[Optional[float], typer.Option(help="decay factor for step/multistep/exponential/plateau")] = None,
    milestones: Annotated[Optional[str], typer.Option(help="multistep: comma-separated epochs, e.g. 30,80")] = None,
    ema: Annotated[Optional[float], typer.Option(help="EMA decay of weights per step (e.g. 0.999); 0 = off")] = None,
    val_size: Annotated[Optional[float], typer.Option(help="Validation split from the training set: fraction < 1 or count.")] = None,
    train_limit: Annotated[Optional[int], typer.Option(help="Train on a seeded subset of N images.")] = None,
    normalize: Annotated[Optional[str], typer.Option(help="MEAN,STD on 0-1 pixels (default: the data set's own)")] = None,
    shift: Annotated[Optional[int], typer.Option(help="Random-shift augmentation, pixels.")] = None,
    data_order: Annotated[Optional[str], typer.Option(help="seeded (default) or torch: replay a DataLoader(shuffle=True)'s batch order.")] = None,
    hflip: Annotated[Optional[bool], typer.Option("--hflip/--no-hflip", help="Random horizontal flips (not for digits).")] = None,
    augment: Annotated[Optional[str], typer.Option(help="Augmentation preset: none, flip, digits, crop, photo, erase (see README).")] = None,
    tta: Annotated[Optional[bool], typer.Option("--tta/--no-tta", help="Test-time augmentation: average the logits over views of each image: its mirror when training mirrored, 1-pixel shifts when it shifted/zoomed (the image and its mirror without training augmentation).")] = None,
    seed: Annotated[Optional[int], typer.Option()] = None,
    deterministic: Annotated[Optional[bool], typer.Option("--deterministic/--no-deterministic")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, mps")] = None,
    precision: Annotated[Optional[str], typer.Option(help="auto (bf16 on CUDA), fast (bf16 where native), fp32, bf16, fp16")] = None,
    channels_last: Annotated[Optional[bool], typer.Option("--channels-last/--no-channels-last")] = None,
    compile: Annotated[Optional[bool], typer.Option("--compile/--no-compile")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
    patience: Annotated[Optional[int], typer.Option(help="Early stopping after N evaluations without improvement.")] = None,
    target_accuracy: Annotated[Optional[float], typer.Option(help="Stop at this validation accuracy (%).")] = None,
    max_time: Annotated[Optional[float], typer.Option(help="Stop after this many seconds of training.")] = None,
    eval_every: Annotated[Optional[int], typer.Option(help="Validate every N epochs.")] = None,
    test_every_epoch: Annotated[Optional[bool], typer.Option("--test-every-epoch/--no-test-every-epoch")] = None,
    report: Annotated[Optional[bool], typer.Option("--report/--no-report", help="Write the run report (HTML/MD/JSON + PNGs).")] = None,
    tensorboard: Annotated[Optional[bool], typer.Option("--tensorboard/--no-tensorboard", help="Also write TensorBoard event files (runs/<name>/tensorboard).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run folder name.")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("runs"),
    ensemble: Annotated[int, typer.Option(help="Train K members (seeds seed..seed+K-1) and test their averaged probabilities.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final summary as one JSON line.")] = False,
) -> None:
    """Train a model; writes runs/<name>/ with config, metrics, checkpoints and a summary."""
    from smallvision import api
    from smallvision.errors import UsageError

    def floats(s: str | None, n: int | None, flag: str) -> list[Any] | None:
        if s is None:
            return None
        try:
            vals = [float(v) for v in s.split(",") if v.strip()]
        except ValueError:
            raise UsageError(f"{flag} takes comma-separated numbers, got {s!r}") from None
        if n is not None and len(vals) != n:
            raise UsageError(f"{flag} takes {n} numbers, got {s!r}")
        return vals

    ms = floats(milestones, None, "--milestones")
    over = _overrides(
        dataset=dataset, data_dir=data_dir, model=model, model_args=_parse_model_args(model_arg), epochs=epochs,
        batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum, nesterov=nesterov,
        weight_decay=weight_decay, label_smoothing=label_smoothing, scheduler=scheduler, warmup_epochs=warmup_epochs,
        step_size=step_size, gamma=gamma, milestones=[int(m) for m in ms] if ms else None, ema=ema,
        val_size=val_size, train_limit=train_limit, data_order=data_order, normalize=floats(normalize, 2, "--normalize"), shift=shift,
        hflip=hflip, augment=augment, tta=tta, seed=seed, deterministic=deterministic, device=device, precision=precision,
        channels_last=channels_last, compile=compile, threads=threads, patience=patience,
        target_accuracy=target_accuracy, max_time=max_time, eval_every=eval_every,
        test_every_epoch=test_every_epoch, report=report, tensorboard=tensorboard, name=name,
        checkpoint_every=checkpoint_every, freeze=freeze, unfreeze_after=unfreeze_after, backbone_lr=backbone_lr,
        cache_features=cache_features,
    )
    command = "smallvision " + shlex.join(sys.argv[1:])
    from smallvision.data.datasets import DATASETS
    from smallvision.engine.optim import OPTIMIZERS, SCHEDULERS
    from smallvision.models import MODELS

    if resume is not None:
        if recipe:
            raise UsageError("--resume continues a run with its own settings; drop --recipe")
        result = api.resume(resume, progress=not as_json, command=command, **over)
        _emit(result.summary, as_json, f"run {result.run_dir}")
        return
    cfg = api.make_config(recipe, **over)
    MODELS.entry(cfg.model), OPTIMIZERS.entry(cfg.optimizer), SCHEDULERS.entry(cfg.scheduler)  # names first
    DATASETS.entry(cfg.dataset.partition(":")[0])
    if ensemble:
        summary = api.train_ensemble(recipe, ensemble, runs_dir=runs_dir, progress=not as_json, command=command, **over)
        _emit(summary, as_json, f"ensemble {summary['run_dir']}")
        return
    result = api.train(recipe, runs_dir=runs_dir, progress=not as_json, command=command, **over)
    _emit(result.summary, as_json, f"run {result.run_dir}")


@app.command()
def evaluate(
    checkpoint: Annotated[str, typer.Argument(help="A run folder (its best checkpoint) or a .safetensors file.")],
    dataset: Annotated[Optional[str], typer.Option(help="Evaluate on another compatible data set.")] = None,
    split: Annotated[str, typer.Option(help="test or val (the run's own seeded validation split).")] = "test",
    data_dir: Annotated[Optional[str], typer.Option()] = None,
    device: Annotated[str, typer.Option()] = "auto",
    out: Annotated[Optional[Path], typer.Option(help="Report folder (default: eval-<data>-<split> beside the checkpoint).")] = None,
    report: Annotated[bool, typer.Option("--report/--no-report")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON line.")] = False,
) -> None:
    """Evaluate a checkpoint on a data set's test (or validation) split and write its report."""
    from smallvision import api

    res = api.evaluate(checkpoint, dataset=dataset, split=split, data_dir=data_dir, device=device, report=report,
                       out=out)
    _emit(res, as_json, f"evaluate {checkpoint}")


@app.command()
def ensemble(
    checkpoints: Annotated[list[str], typer.Argument(help="Two or more run folders or .safetensors files.")],
    dataset: Annotated[Optional[str], typer.Option(help="Test on this data set (default: the one they were trained on).")] = None,
    split: Annotated[str, typer.Option(help="test or val.")] = "test",
    data_dir: Annotated[Optional[str], typer.Option()] = None,
    device: Annotated[str, typer.Option()] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON line.")] = False,
) -> None:
    """Test the averaged probabilities of models you already trained (any recipes, same classes)."""
    from smallvision import api

    res = api.evaluate_ensemble(checkpoints, dataset=dataset, split=split, data_dir=data_dir, device=device)
    _emit(res, as_json, f"ensemble of {len(checkpoints)}")


@app.command()
def convert(
    dataset: Annotated[str, typer.Argument(help="Any data-set spec, e.g. mnist.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("."),
    prefix: Annotated[Optional[str], typer.Option(help="File prefix (default: the data set's name).")] = None,
    header: Annotated[bool, typer.Option("--header/--no-header")] = False,
    data_dir: Annotated[Optional[str], typer.Option()] = None,
) -> None:
    """Write a data set as seed 004's CSV files: PREFIX_train.csv and PREFIX_test.csv (label,p0..pN)."""
    from smallvision.data import load_dataset
    from smallvision.data.csvdata import write_csv

    data = load_dataset(dataset, data_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = prefix or dataset.split(":")[0].replace("-", "_")
    for split, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
        path = out / f"{stem}_{split}.csv"
        write_csv(path, x.numpy(), y.numpy(), header=header)
        print(f"wrote {path} ({len(x)} rows)")


@app.command()
def predict(
    checkpoint: Annotated[str, typer.Argument(help="A run folder or a .safetensors checkpoint.")],
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    top_k: Annotated[int, typer.Option(help="How many classes to list per image.")] = 3,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
    invert: Annotated[str, typer.Option(help="Digit models: invert dark-on-light images (auto|yes|no).")] = "auto",
    center: Annotated[str, typer.Option(help="Digit models: crop and centre by mass as MNIST (auto|yes|no).")] = "auto",
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Predict classes of your own images with the model's own preprocessing."""
    from smallvision.errors import UsageError
    from smallvision.predict import Predictor, expand_inputs

    if fmt not in ("table", "json", "csv"):
        raise UsageError(f"--format must be table, json or csv, got {fmt!r}")
    if top_k < 1:
        raise UsageError(f"--top-k must be ≥ 1, got {top_k}")
    files = expand_inputs(inputs)
    results = Predictor.from_checkpoint(checkpoint, device).predict(files, top_k=top_k, invert=invert, center=center)
    if fmt == "json":
        for r in results:
            print(json.dumps(r))
    elif fmt == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(["file", "label", "probability", "top_k", "error"])
        for r in results:
            w.writerow([r["file"], r.get("label", ""), r.get("probability", ""),
                        ";".join(f"{lbl}:{p}" for lbl, p in r.get("top_k", [])), r.get("error", "")])
    else:
        for r in results:
            if "error" in r:
                print(f"{r['file']}: ERROR {r['error']}")
            else:
                alts = ", ".join(f"{lbl} {p:.3f}" for lbl, p in r["top_k"])
                print(f"{r['file']}: {r['label']} ({r['probability']:.3f})   top-{len(r['top_k'])}: {alts}")
    if any("error" in r for r in results):
        sys.exit(1)


@app.command()
def check(
    path: Annotated[Path, typer.Argument(help="An image folder (class sub-folders, train/+val/, or flat).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Scan an image folder: unreadable/truncated images, non-images, balance, sizes, duplicates. Exit 1 on problems."""
    from smallvision.data.check import check_folder, format_report

    r = check_folder(path)
    print(json.dumps(r) if as_json else format_report(r))
    if r["problems"]:
        sys.exit(1)


def _parse_sets(items: list[str] | None) -> dict[str, Any]:
    """--set KEY=VALUE pairs (VALUE parsed as JSON when it can be) as config overrides."""
    from smallvision.config import FIELDS
    from smallvision.errors import UsageError

    out = _parse_model_args(items) or {}
    for k in out:
        if k not in FIELDS:
            import difflib

            close = difflib.get_close_matches(k, list(FIELDS), n=2)
            raise UsageError(f"--set: unknown setting {k!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    return out


@app.command()
def compare(
    runs: Annotated[Optional[list[str]], typer.Argument(help="Finished run folders to include.")] = None,
    recipes: Annotated[Optional[str], typer.Option(help="Comma-separated recipes to train and compare.")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per recipe (mean ± std over them).")] = 1,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override KEY=VALUE for every recipe, repeatable.")] = None,
    runs_dir: Annotated[Path, typer.Option()] = Path("runs"),
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default runs/compare-<time>).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Compare recipes over seeds, or finished runs: a mean ± std table and overlaid validation curves."""
    from smallvision.compare import compare as run_compare
    from smallvision.compare import markdown_table

    names = [r.strip() for r in (recipes or "").split(",") if r.strip()]
    rows, folder = run_compare(names, runs or [], seeds, runs_dir, out, _parse_sets(set_),
                               log=lambda m: print(m, file=sys.stderr, flush=True))
    if as_json:
        print(json.dumps({"rows": rows, "out": str(folder)}))
    else:
        print(markdown_table(rows))
        print(f"\nsaved {folder / 'compare.md'}, {folder / 'compare.png'}")


@app.command()
def show(
    dataset: Annotated[str, typer.Argument(help="A data-set spec, e.g. fashion-mnist.")],
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default show-<dataset>).")] = None,
    per_class: Annotated[int, typer.Option(help="Images per class in the grid.")] = 8,
    data_dir: Annotated[Optional[str], typer.Option()] = None,
) -> None:
    """Sample images per class and the class balance, as PNGs and a text table."""
    from smallvision.report.show import show_dataset

    folder = out or Path("show-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in dataset))
    res = show_dataset(dataset, folder, per_class, data_dir)
    print(res["text"])
    print(f"saved {res['samples']}, {res['balance']}")


@app.command("lr-find")
def lr_find_cmd(
    recipe: Annotated[Optional[str], typer.Option(help="Start from a recipe.")] = None,
    dataset: Annotated[Optional[str], typer.Option()] = None,
    model: Annotated[Optional[str], typer.Option()] = None,
    optimizer: Annotated[Optional[str], typer.Option()] = None,
    batch_size: Annotated[Optional[int], typer.Option()] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override KEY=VALUE, repeatable.")] = None,
    steps: Annotated[int, typer.Option(help="Steps of the range test.")] = 100,
    start_lr: Annotated[float, typer.Option()] = 1e-6,
    end_lr: Annotated[float, typer.Option()] = 10.0,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("lr-find"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Learning-rate range test: plot loss against an exponentially rising rate; suggest a rate."""
    from smallvision import api
    from smallvision.engine.lr_find import lr_find
    from smallvision.errors import UsageError

    if steps < 10 or not 0 < start_lr < end_lr:
        raise UsageError("lr-find needs --steps ≥ 10 and 0 < --start-lr < --end-lr")
    cfg = api.make_config(recipe, **{**_overrides(dataset=dataset, model=model, optimizer=optimizer,
                                                   batch_size=batch_size), **_parse_sets(set_)})
    res = lr_find(cfg, out, start_lr, end_lr, steps)
    if as_json:
        print(json.dumps({k: v for k, v in res.items() if k not in ("lrs", "losses")}))
    else:
        print(f"suggested learning rate: {res['suggested_lr']:.3g} (steepest descent); "
              f"loss was lowest at {res['min_loss_lr']:.3g}\nsaved {res['plot']}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user errors into one line and exit status 2.

    typer's standalone mode already answers bad flags with usage text and status 2.
    """
    from smallvision.errors import DivergenceError, Preempted, UsageError

    args = list(sys.argv[1:] if argv is None else argv)
    _DEBUG["on"] = "--debug" in args or os.environ.get("SMALLVISION_DEBUG") == "1"
    if not _DEBUG["on"]:  # our warnings (skipped images, label gaps) as one line each, like errors
        warnings.formatwarning = lambda message, *_a, **_k: f"warning: {message}\n"
    # typer vendors click; its usage errors derive from the public typer.TyperException.
    from typer import Abort, Exit, TyperException

    try:
        rv = typer.main.get_command(app).main(args=args, prog_name="smallvision", standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except TyperException as e:  # bad flags: one line, like every other user error
        if not e.format_message():  # no arguments at all: the help text was shown
            sys.exit(0)
        where = e.ctx.command_path if getattr(e, "ctx", None) is not None else "smallvision"
        print(f"error: {e.format_message()} (see {where} --help)", file=sys.stderr)
        sys.exit(e.exit_code)
    except Exit as e:
        sys.exit(e.exit_code)
    except Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except UsageError as e:
        if _DEBUG["on"]:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Preempted as e:
        print(f"{e}", file=sys.stderr)
        sys.exit(143)
    except DivergenceError as e:
        if _DEBUG["on"]:
            raise
        print(f"error: training diverged: {e}", file=sys.stderr)
        sys.exit(3)
    except Exception as e:  # anything unforeseen: one line, non-zero; --debug shows the traceback
        if _DEBUG["on"]:
            raise
        print(f"error: internal error ({type(e).__name__}): {e} (rerun with --debug for details)", file=sys.stderr)
        sys.exit(1)
