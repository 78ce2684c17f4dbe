"""`smallvision` command line. Thin: parses flags, calls `smallvision.api`, prints results.

Heavy imports (torch) happen inside commands so ``smallvision --help`` starts fast. User
errors print one line and exit 2 (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from smallvision.cli.flags import option, parse_pairs, parse_sets, settings_from_flags, with_settings
from smallvision.config import DatasetSpec
from smallvision.runfolder import RunFolder

app = typer.Typer(
    name="smallvision",
    help="Train, evaluate and compare small image classifiers (MNIST, Fashion-MNIST, CIFAR, folders).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _add_generative() -> None:
    from smallvision.cli.generative import ae_app, diffusion_app, gan_app

    app.add_typer(gan_app, name="gan")
    app.add_typer(ae_app, name="autoencoder")
    app.add_typer(diffusion_app, name="diffusion")


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False) -> None:
    """(--debug is read by `main` before the command runs: it decides how errors are shown.)"""


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
    """List the recipes (use with: smallvision train --recipe NAME, or gan|diffusion|autoencoder train
    --recipe NAME for the generative ones)."""
    from smallvision.recipes import recipe_doc, recipe_kind, recipe_names

    _print_table([(n, ("" if recipe_kind(n) == "train" else f"{recipe_kind(n)} train: ") + recipe_doc(n).get("description", ""))
                  for n in recipe_names()], "recipes")


def _emit(summary: dict[str, Any], as_json: bool, title: str) -> None:
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for the job
        return
    if as_json:
        print(json.dumps(summary))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, show_header=False)
    for k, v in summary.items():
        if k == "calibration" and isinstance(v, dict):  # one line: what the temperature did
            v = (f"temperature {v['temperature']:.3f} (fitted on {v['val_images']} validation images); ECE on test "
                 f"{100 * v['test_ece_before']:.2f} % -> {100 * v['test_ece_after']:.2f} %"
                 if "test_ece_before" in v else f"temperature {v['temperature']:.3f}" if "temperature" in v
                 else f"none ({v.get('skipped', '')})")
        if k == "ood" and isinstance(v, dict):  # one line: what "none of these" does on the test split
            from smallvision.ood import describe

            v = f"accepts {v['test_accepted_percent']:.1f} % of test images; {describe(v)}"
        if v is not None and v != "":
            t.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    Console().print(t)


_RECIPE = option("recipe", Optional[str], None, "--recipe", help="A named recipe (see `smallvision recipes`); flags override it.")
_CONFIG = option("config", Optional[Path], None, "--config",
                 help="Settings from a file: a recipe TOML (print-config writes one) or a run's config.json; flags override it.")
_CTX = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
_SET = option("set_", Optional[list[str]], None, "--set", help="Any setting as KEY=VALUE (JSON value), repeatable.")
# `train` lists every setting as a flag; the commands that build on a recipe (tune, print-config, and
# cv, compare, lr-find) take settings one way: --recipe, --config, --set KEY=VALUE, and the data set.
_DATASET = option("dataset", Optional[str], None, "--dataset", help="Data set NAME or NAME:PATH (default: the recipe's).")


def _argv(ctx: typer.Context) -> list[str]:
    """The arguments `main(argv)` was given, kept on the root context: a command records (and
    torchrun repeats) what it received, also when `main([...])` is called from Python."""
    return list((ctx.find_root().obj or {}).get("argv", []))


def _command_line(ctx: typer.Context) -> str:
    return "smallvision " + shlex.join(_argv(ctx))


def _settings(kw: dict[str, Any]) -> dict[str, Any]:
    return {**parse_sets(kw.get("set_")), **settings_from_flags(kw)}


@app.command()
@with_settings(
    _CTX, _RECIPE, _CONFIG,
    option("resume", Optional[Path], None, "--resume", help="Continue a stopped run folder from where it stopped."),
    option("runs_dir", Path, Path("runs"), "--runs-dir", help="Where run folders go."),
    option("ensemble", int, 0, "--ensemble", help="Train K members (seeds seed..seed+K-1) and test their averaged probabilities."),
    option("nproc", int, 1, "--nproc", help="Data-parallel over N processes on this machine: runs torchrun for you "
           "(--batch-size stays the global batch; see README, 'Several processes')."),
    option("as_json", bool, False, "--json", help="Print the final summary as one JSON line."),
    _SET,
)
def train(ctx: typer.Context, **kw: Any) -> None:
    """Train a model; writes runs/<name>/ with config, metrics, checkpoints, a summary and a report."""
    from smallvision import api

    over, as_json, resume = _settings(kw), kw["as_json"], kw["resume"]
    # the settings resolved and validated once, here (bad ones fail before torchrun starts a process); a
    # resume has its own (train_command refuses --recipe/--config with it; the flags may change a few)
    fresh = resume is None or kw["recipe"] or kw["config"]
    cfg = api.make_config(kw["recipe"], kw["config"], **over) if fresh else None
    title, summary = api.train_command(cfg, resume=resume, ensemble=kw["ensemble"], nproc=kw["nproc"],
                                       runs_dir=kw["runs_dir"], progress=not as_json, command=_command_line(ctx),
                                       argv=_argv(ctx), **({} if fresh else over))
    if title == "torchrun":
        sys.exit(summary["returncode"])
    _emit(summary, as_json, title)


@app.command()
@with_settings(
    _RECIPE, _CONFIG,
    option("space", str, "lr,weight_decay,label_smoothing", "--space", help="Settings to search, comma-separated: NAME "
           "(a default range) or NAME=log:LOW:HIGH, NAME=float:LOW:HIGH, NAME=int:LOW:HIGH, NAME=A|B|C."),
    option("trials", int, 20, "--trials", help="How many trials (the time budget may end the search sooner)."),
    option("time_budget", float, 0.0, "--time-budget", help="Seconds for the search (0: none); the final run is extra."),
    option("jobs", int, 0, "--jobs", help="Trials side by side (0: auto, one per 2 cores from 4 cores up)."),
    option("final", bool, True, "--final/--no-final", help="Train the best settings and read the test set, once."),
    option("prune", bool, True, "--prune/--no-prune", help="Stop trials that fall below the median (MedianPruner)."),
    option("out", Optional[Path], None, "--out", help="Where to write the tuned recipe (default: <tune folder>/tuned.toml)."),
    option("trial_val_size", Optional[float], None, "--trial-val-size", help="The trials' validation split, a fraction "
           "or a count (default: the recipe's val_size, or 0.1 when it has none); --set val_size=V changes the recipe itself."),
    option("runs_dir", Path, Path("runs"), "--runs-dir", help="Where the tune folder goes."),
    _DATASET, _SET, cls=None,
)
def tune(**kw: Any) -> None:
    """Search settings on a validation split (Optuna); write them as a recipe; test the best once."""
    from smallvision.tune import tune as run_tune

    over = _settings(kw)
    name = over.pop("name", "")
    r = run_tune(kw["recipe"], kw["config"], space=kw["space"], trials=kw["trials"], time_budget=kw["time_budget"],
                 trial_val_size=kw["trial_val_size"], runs_dir=kw["runs_dir"], name=name, seed=over.get("seed", 0), jobs=kw["jobs"],
                 final=kw["final"], prune=kw["prune"], out=kw["out"], **over)
    print(f"tuned recipe: {r.recipe_path}   (train it: smallvision train --config {r.recipe_path})")


@app.command("print-config")
@with_settings(_CTX, _RECIPE, _CONFIG, _DATASET, _SET, cls=None)
def print_config(ctx: typer.Context, **kw: Any) -> None:
    """Print the resolved settings (defaults < recipe < --config < --set) as a recipe TOML file: save
    it, edit it, train it with --config FILE. A generative recipe prints as its own table."""
    from smallvision import api
    from smallvision.config import to_toml
    from smallvision.recipes import recipe_kind

    if kw["recipe"] and (kind := recipe_kind(kw["recipe"])) != "train":  # a generative recipe: its own schema
        from smallvision.errors import UsageError
        from smallvision.generative.config import gen_config
        from smallvision.generative.config import to_toml as gen_toml

        if kw["config"] or _settings(kw):
            raise UsageError(f"print-config prints a {kind} recipe as it is; to change it: smallvision {kind} train "
                             f"--recipe {kw['recipe']} --FLAG VALUE")
        print(gen_toml(gen_config(kind, None, kw["recipe"]), f"settings of {_command_line(ctx)}"), end="")
        return
    cfg = api.make_config(kw["recipe"], kw["config"], **_settings(kw))
    print(to_toml(cfg, f"settings of {_command_line(ctx)}"), end="")


@app.command()
def evaluate(
    checkpoint: Annotated[str, typer.Argument(help="A run folder (its best checkpoint) or a .safetensors file.")],
    dataset: Annotated[Optional[str], typer.Option(help="Evaluate on another compatible data set.")] = None,
    data_arg: Annotated[Optional[list[str]], typer.Option(help="Data-set option KEY=VALUE, repeatable.")] = None,
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
                       out=out, data_args=parse_pairs(data_arg, "--data-arg"))
    _emit(res, as_json, f"evaluate {checkpoint}")


@app.command()
def ensemble(
    checkpoints: Annotated[list[str], typer.Argument(help="Two or more run folders or .safetensors files.")],
    dataset: Annotated[Optional[str], typer.Option(help="Test on this data set (default: the one they were trained on).")] = None,
    data_arg: Annotated[Optional[list[str]], typer.Option(help="Data-set option KEY=VALUE, repeatable.")] = None,
    split: Annotated[str, typer.Option(help="test or val.")] = "test",
    data_dir: Annotated[Optional[str], typer.Option()] = None,
    device: Annotated[str, typer.Option()] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON line.")] = False,
) -> None:
    """Test the averaged probabilities of models you already trained (any recipes, same classes)."""
    from smallvision import api

    res = api.evaluate_ensemble(checkpoints, dataset=dataset, split=split, data_dir=data_dir, device=device,
                                data_args=parse_pairs(data_arg, "--data-arg"))
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
    stem = prefix or DatasetSpec.parse(dataset, strict=False).name.replace("-", "_")
    for split, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
        path = out / f"{stem}_{split}.csv"
        write_csv(path, x.numpy(), y.numpy(), header=header)
        print(f"wrote {path} ({len(x)} rows)")


@app.command()
def predict(
    checkpoint: Annotated[str, typer.Argument(help="A run folder, a .safetensors checkpoint or an exported .onnx file.")],
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    top_k: Annotated[int, typer.Option(help="How many classes to list per image.")] = 3,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
    invert: Annotated[str, typer.Option(help="Digit models: invert dark-on-light images (auto|yes|no).")] = "auto",
    center: Annotated[str, typer.Option(help="Digit models: crop and centre by mass as MNIST (auto|yes|no).")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, mps")] = "auto",
    accept: Annotated[Optional[float], typer.Option(help="\"None of these\" at another operating point: the share of "
                                                    "the run's validation images to accept (default: the run's own, 0.95).")] = None,
) -> None:
    """Predict classes of your own images with the model's own preprocessing; an image unlike the
    training images is answered "none of these" (docs/ood.md)."""
    from smallvision.errors import UsageError
    from smallvision.predict import Predictor, expand_inputs

    if fmt not in ("table", "json", "csv"):
        raise UsageError(f"--format must be table, json or csv, got {fmt!r}")
    if top_k < 1:
        raise UsageError(f"--top-k must be ≥ 1, got {top_k}")
    files = expand_inputs(inputs)
    predictor = Predictor.from_checkpoint(checkpoint, device)
    predictor.accept(accept)
    results = predictor.predict(files, top_k=top_k, invert=invert, center=center)
    if fmt == "table":
        cal = predictor.card.get("calibration", "none")
        print(f"probabilities: {'calibrated, ' + cal if cal != 'none' else 'uncalibrated (no temperature was fitted on held-out images: none held out, or too few)'}",
              file=sys.stderr)
    if fmt == "json":
        for r in results:
            print(json.dumps(r))
    elif fmt == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(["file", "label", "probability", "top_k", "ood_score", "none_of_these", "error"])
        for r in results:
            w.writerow([r["file"], r.get("label", ""), r.get("probability", ""),
                        ";".join(f"{lbl}:{p}" for lbl, p in r.get("top_k", [])), r.get("ood_score", ""),
                        r.get("none_of_these", ""), r.get("error", "")])
    else:
        for r in results:
            print(_answer_line(r))
    if any("error" in r for r in results):
        sys.exit(1)


def _answer_line(r: dict[str, Any]) -> str:
    """predict's and explain's line for one image: its label and top-k, or its error."""
    if "error" in r:
        return f"{r['file']}: ERROR {r['error']}"
    alts = ", ".join(f"{lbl} {p:.3f}" for lbl, p in r["top_k"])
    if r.get("none_of_these"):
        return f"{r['file']}: none of these (OOD score {r['ood_score']:.3g}, beyond the model's threshold)   top-{len(r['top_k'])}: {alts}"
    return f"{r['file']}: {r['label']} ({r['probability']:.3f})   top-{len(r['top_k'])}: {alts}"


@app.command("explain")
def explain_cmd(
    checkpoint: Annotated[str, typer.Argument(help="A run folder or a .safetensors checkpoint.")],
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default: explain/ beside the checkpoint).")] = None,
    top_k: Annotated[int, typer.Option(help="Classes listed per image.")] = 3,
    layer: Annotated[Optional[str], typer.Option(help="Grad-CAM on this module of the model's features (default: its last feature map).")] = None,
    invert: Annotated[str, typer.Option(help="Digit models: invert dark-on-light images (auto|yes|no).")] = "auto",
    center: Annotated[str, typer.Option(help="Digit models: crop and centre by mass as MNIST (auto|yes|no).")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, mps")] = "cpu",
) -> None:
    """Why the model said what it said: per image, the image, its Grad-CAM heatmap (plus occlusion for inputs of ≤ 32 px) and the top classes."""
    from smallvision.errors import UsageError
    from smallvision.explain import Explainer
    from smallvision.modelfile import resolve

    if top_k < 1:
        raise UsageError(f"--top-k must be ≥ 1, got {top_k}")
    folder = out or resolve(checkpoint).parent / RunFolder.EXPLAIN
    rows = Explainer.from_checkpoint(checkpoint, device, layer).explain_files(inputs, folder, top_k, invert, center)
    for r in rows:
        print(_answer_line(r) + (f"   -> {r['figure']}" if "figure" in r else ""))
    print(f"saved {folder / 'explain.json'} ({', '.join(rows[0].get('methods', [])) if rows else 'no images'})")
    if any("error" in r for r in rows):
        sys.exit(1)


@app.command()
def calibrate(
    run: Annotated[str, typer.Argument(help="A finished run folder (or its .safetensors checkpoint).")],
    ood_examples: Annotated[Optional[Path], typer.Option(help="Instead: a folder of images the model should answer "
                                                         "\"none of these\" for; its OOD threshold is tightened to refuse them.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, mps")] = "auto",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Fit a temperature on the run's validation split (temperature scaling) and store it in its checkpoints: predict, serve, evaluate and export then give calibrated probabilities. With --ood-examples: set the "none of these" threshold from examples instead."""
    from smallvision import api

    if ood_examples is not None:
        doc = api.refuse_like(run, ood_examples, device)
        if as_json:
            print(json.dumps(doc))
            return
        print(f"none of these: {doc['detector']} threshold {doc['threshold']:.4g}, now accepting "
              f"{doc['accept']:.1%} of the run's own images (was {doc['accept_before']:.1%}); of the "
              f"{doc['examples']} examples, {doc['examples_accepted_percent']:.1f} % accepted (was "
              f"{doc['examples_accepted_percent_before']:.1f} %); written into {run}'s checkpoints")
        return
    doc = api.calibrate(run, device)
    if as_json:
        print(json.dumps(doc))
        return
    print(f"temperature {doc['temperature']:.4f}, fitted on {doc['val_images']} validation images; written into "
          f"{run}'s checkpoints")
    for sp in ("val", "test"):
        print(f"{sp:>4}: ECE {100 * doc[f'{sp}_ece_before']:.2f} % -> {100 * doc[f'{sp}_ece_after']:.2f} %, "
              f"MCE {100 * doc[f'{sp}_mce_before']:.2f} % -> {100 * doc[f'{sp}_mce_after']:.2f} %, "
              f"NLL {doc[f'{sp}_nll_before']:.4f} -> {doc[f'{sp}_nll_after']:.4f}")
    print(f"saved {doc.get('figure', '')}")


@app.command("export")
def export_cmd(
    checkpoint: Annotated[str, typer.Argument(help="A run folder or a .safetensors checkpoint.")],
    fmt: Annotated[str, typer.Option("--format", help="onnx, onnx-int8 (static int8, checked by test accuracy), "
                                     "torchscript, safetensors, tflite / executorch and their -int8 (phones; checked in their own "
                                     "runtimes), or web / web-int8 (a folder: a page that runs the model offline in "
                                     "any browser)")] = "onnx",
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="File to write (default: model.<ext> beside the "
                                               "checkpoint; web: the folder web/ in the run).")] = None,
    force: Annotated[bool, typer.Option("--force", help="web: replace a folder that exists and is not empty.")] = False,
    check_images: Annotated[int, typer.Option(help="Test images the export is checked on against PyTorch.")] = 256,
    data_dir: Annotated[Optional[str], typer.Option(help="Where the model's data set is (for the check).")] = None,
    opset: Annotated[Optional[int], typer.Option(help="ONNX opset (default: the exporter's).")] = None,
    max_drop: Annotated[float, typer.Option(help="onnx-int8: test accuracy points it may lose against fp32.")] = 0.3,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Export a model to ONNX (fp32 or int8)/TorchScript/safetensors, checked against PyTorch on real test images."""
    from smallvision.export import TOLERANCE, describe, export

    if fmt in ("web", "web-int8"):
        from smallvision.web import export_web

        w = export_web(checkpoint, out, force=force, int8=fmt == "web-int8", data_dir=data_dir, check_n=check_images,
                       opset=opset)
        if as_json:
            print(json.dumps(dataclasses.asdict(w)))
            return
        c = w.check
        checked = (f"int8 {c['accuracy']:.2f} % against fp32's {c['reference_accuracy']:.2f} % on {c['checked_on']}"
                   if c["accuracy"] is not None else
                   f"max abs logit difference {c['max_abs_diff']:.2e} against PyTorch on {c['checked_on']}")
        print(f"wrote {w.path}/ ({w.bytes / 1e6:.1f} MB: the page, the model {w.model_bytes / 1e6:.1f} MB, ONNX Runtime "
              f"Web); model checked: {checked}")
        print(f"open it: python -m http.server -d {w.path} 8000, then http://localhost:8000/")
        return
    r = export(checkpoint, fmt, out, data_dir, check_images, opset, max_drop)  # int8: 512 calibration images
    if as_json:
        print(json.dumps(describe(r)))
        return
    where = f"beside it in {Path(r.path).name}.json" if fmt.startswith(("tflite", "executorch")) else "inside"
    print(f"wrote {r.path} ({r.format}, {r.bytes / 1e6:.2f} MB) with the preprocessing and model card {where}")
    if r.accuracy is not None:
        print(f"checked on {r.checked_on}: int8 {r.accuracy:.2f} %, fp32 {r.reference_accuracy:.2f} % "
              f"(at most {r.max_drop:g} points lower allowed); top class as fp32's on {'all' if r.same_argmax else 'not all'} "
              f"of the first {check_images}")
        return
    print(f"checked on {r.checked_on}: max abs logit difference {r.max_abs_diff:.2e} (≤ {TOLERANCE:g}), "
          f"same top class {'for all' if r.same_argmax else 'NOT for all'}")


@app.command()
def benchmark(
    checkpoint: Annotated[str, typer.Argument(help="A run folder or a .safetensors checkpoint.")],
    formats: Annotated[str, typer.Option(help="Comma-separated, from: pytorch-fp32, pytorch-bf16, torchscript, onnx, "
                                         "onnx-int8, openvino, and on request tflite, executorch (phones) and web (the exported page, timed in headless Chromium).")] = ",".join(("pytorch-fp32", "pytorch-bf16", "torchscript",
                                                                              "onnx", "onnx-int8", "openvino")),
    images: Annotated[int, typer.Option(help="Test images the batch throughput is timed on.")] = 1024,
    batch: Annotated[int, typer.Option(help="Batch size of the throughput and accuracy passes.")] = 256,
    threads: Annotated[int, typer.Option(help="CPU threads for every runtime (0: torch's default).")] = 0,
    data_dir: Annotated[Optional[str], typer.Option(help="Where the model's data set is.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every export format of a model side by side: file size, test accuracy, batch-1 latency, batch throughput."""
    from smallvision.bench import benchmark as run_benchmark
    from smallvision.bench import markdown

    doc = run_benchmark(checkpoint, data_dir, [f.strip() for f in formats.split(",") if f.strip()], images, batch,
                        threads=threads, log=lambda m: print(m, file=sys.stderr, flush=True))
    if as_json:
        print(json.dumps(doc))
        return
    from rich.console import Console
    from rich.table import Table

    head, *_ = markdown(doc)
    t = Table(title=head, header_style="bold")
    for col in ("format", "MB", "test acc. %", "ms, batch 1", f"images/s, batch {doc['batch']}"):
        t.add_column(col, justify="left" if col == "format" else "right", no_wrap=True)
    for r in doc["rows"]:
        if "accuracy" in r:
            t.add_row(r["format"], f"{r['bytes'] / 1e6:.3f}", f"{r['accuracy']:.2f}", f"{r['latency_ms']:.3f}",
                      f"{r['images_per_s']:,.0f}" if "images_per_s" in r else "")
    Console().print(t)
    for r in doc["rows"]:
        if r.get("note"):
            print(f"{r['format']}: {r['note']}")
    if "int8" in doc:
        print(markdown(doc)[-1])
    if "saved" in doc:
        print(f"saved {doc['saved']}")


@app.command()
def serve(
    checkpoint: Annotated[str, typer.Argument(help="A run folder, a .safetensors checkpoint or an exported .onnx file.")],
    host: Annotated[str, typer.Option(help="Interface to listen on; 0.0.0.0 exposes the server to your network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body accepted (413 above).")] = 10.0,
    max_pixels: Annotated[int, typer.Option(help="Largest image (width × height) decoded (413 above).")] = 50_000_000,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, mps")] = "auto",
    threads: Annotated[int, typer.Option(help="Threads per prediction (requests run side by side).")] = 1,
    review: Annotated[Optional[list[Path]], typer.Option(help="A label_ranking.csv (`labels`) or suggestions.csv "
                                                         "(`suggest`) to show for review; the run's own suggestions are shown anyway.")] = None,
) -> None:
    """Serve a page to draw or upload images and see the model's guess, plus a JSON API."""
    from smallvision.errors import UsageError
    from smallvision.serve import Limits
    from smallvision.serve import serve as run_server

    if max_upload_mb <= 0 or max_pixels <= 0:
        raise UsageError("--max-upload-mb and --max-pixels must be positive")
    limits = Limits(max_bytes=int(max_upload_mb * 1024 * 1024), max_pixels=max_pixels)
    print(f"serving {checkpoint} on http://{host}:{port}/  (API docs: /docs; Ctrl-C stops)", flush=True)
    run_server(checkpoint, host, port, limits, device, threads, review=review)


@app.command()
def check(
    path: Annotated[str, typer.Argument(help="An image folder.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Scan an image folder: unreadable images, non-images, balance, sizes, duplicates (exit 1 on problems)."""
    from smallvision.data.check import check_folder, format_report

    r = check_folder(path)
    print(json.dumps(r) if as_json else format_report(r))
    if r["problems"]:
        sys.exit(1)


@app.command()
def labels(
    dataset: Annotated[str, typer.Argument(help="Any data set: an image folder, mnist, folder:DIR, npz:FILE, ...")],
    split: Annotated[str, typer.Option(help="The split to check, train or test.")] = "train",
    folds: Annotated[int, typer.Option(help="Folds (one model trained per fold, one after another).")] = 5,
    recipe: Annotated[Optional[str], typer.Option(help="The folds' recipe (default: photo-transfer-fast for photos, "
                                                  "else mnist-fast with epochs raised for small folds).")] = None,
    data_arg: Annotated[Optional[list[str]], typer.Option(help="Data-set option KEY=VALUE, repeatable.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Any training setting KEY=VALUE for the folds, repeatable.")] = None,
    top: Annotated[int, typer.Option(help="Suspects shown in the PNG grid.")] = 50,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: the cv folder under --runs-dir).")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where the fold runs go.")] = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Rank a data set's probably mislabelled images: k-fold out-of-fold predictions, then confident learning (cleanlab)."""
    from smallvision.clean import label_issues

    # a folder (existing, or a path-looking argument, so a missing one is named as a folder) or a data-set spec
    spec = dataset if ":" in dataset or not (Path(dataset).is_dir() or "/" in dataset) else f"folder:{dataset}"
    overrides = parse_sets(set_)
    if data_arg:
        overrides["data_args"] = {**overrides.get("data_args", {}), **(parse_pairs(data_arg, "--data-arg") or {})}
    r = label_issues(spec, split, folds, recipe, runs_dir, out, top,
                     log=lambda m: print(m, file=sys.stderr, flush=True), **overrides)
    if as_json:
        print(json.dumps({k: v for k, v in r.items() if k != "suspects"} | {"suspects": r["suspects"][:top]}))
        return
    print(f"{r['suspect_count']} probable label errors in {r['images']} {split} images of {spec} "
          f"({100 * r['suspect_share']:.2f} %); {folds}-fold out-of-fold accuracy {r['oof_accuracy']:.2f} % "
          f"(folds {r['mean_accuracy']:.2f} ± {r['std_accuracy']:.2f} %), {r['seconds']:.0f} s")
    for row in r["suspects"][:10]:
        where = row.get("file", f"#{row['index']}")
        print(f"  {where}: labelled {row['given']}, looks like {row['suggested']} "
              f"(p(given) {row['self_confidence']:.3f})")
    for d in r.get("near_duplicates_with_different_labels", [])[:5]:
        print(f"  near-duplicates, different labels: {d['a']} ({d['label_a']}) ~ {d['b']} ({d['label_b']})")
    print(f"saved {r['suspects_csv']}, every image ranked in {r['ranking_csv']}, {r['grid'] or ''} "
          f"(fold runs in {r['cv_dir']})")


@app.command()
def suggest(
    run: Annotated[str, typer.Argument(help="A run folder or a .safetensors checkpoint.")],
    folder: Annotated[Path, typer.Argument(help="A folder of unlabelled images (sub-folders named as the run's "
                                           "classes count as labelled and are left out).")],
    n: Annotated[int, typer.Option("-n", help="How many images to suggest.")] = 50,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: suggestions/ in the run).")] = None,
) -> None:
    """Which images to label next: the most useful first (doubtful, and not copies of one confusion); a CSV and a grid."""
    from smallvision.suggest import suggest as rank_folder

    r = rank_folder(run, folder, n, out=out, log=lambda m: print(m, file=sys.stderr, flush=True))
    for row in r["suggestions"][:10]:
        guess = f"{row['predicted']} {row['probability']:.2f}" + (f" or {row['second']} {row['second_probability']:.2f}"
                                                                   if "second" in row else "")
        print(f"{row['rank']:>4}. {row['file']}  ({guess})")
    more = f" ({r['already_labelled']} already in class folders left out)" if r["already_labelled"] else ""
    print(f"suggested {r['n']} of {r['pool']} unlabelled images{more}; every image ranked in {r['csv']}, "
          f"the first {min(r['n'], 48)} in {r['grid']}. Move each into its class folder of the training data "
          "and train again.")


@app.command()
def cv(
    recipe: Annotated[Optional[str], typer.Option(help="The recipe every fold trains (flags override it).")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Data set (default: the recipe's).")] = None,
    data_arg: Annotated[Optional[list[str]], typer.Option(help="Data-set option KEY=VALUE, repeatable.")] = None,
    folds: Annotated[int, typer.Option(help="K: stratified, seeded folds; one run per fold, one after another.")] = 5,
    split: Annotated[str, typer.Option(help="The split the folds are made of: train or test.")] = "train",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Any training setting KEY=VALUE, repeatable.")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where the cv folder goes.")] = Path("runs"),
    name: Annotated[Optional[str], typer.Option(help="The cv folder's name (default: cv-RECIPE-DATA-SPLIT-TIME).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """K-fold cross-validation: mean ± std of the fold accuracies, out-of-fold probabilities in oof.npz, every fold's run kept."""
    from smallvision.cv import cross_validate

    overrides = parse_sets(set_)
    if dataset:
        overrides["dataset"] = dataset
    if data_arg:
        overrides["data_args"] = {**overrides.get("data_args", {}), **(parse_pairs(data_arg, "--data-arg") or {})}
    r = cross_validate(recipe, folds, split, runs_dir, name, progress=not as_json,
                       log=lambda m: print(m, file=sys.stderr, flush=True), **overrides)
    doc = {k: v for k, v in r.items() if k not in ("probs", "labels", "fold_of", "files", "class_names", "data")}
    if as_json:
        print(json.dumps(doc))
        return
    print(f"{folds}-fold cross-validation of {doc['recipe']} on {doc['dataset']} {split} ({doc['images']} images): "
          f"{doc['mean_accuracy']:.2f} ± {doc['std_accuracy']:.2f} % (out-of-fold {doc['oof_accuracy']:.2f} %), "
          f"{doc['seconds']:.0f} s")
    for row in doc["fold_runs"]:
        print(f"  fold {row['fold'] + 1}: {row['accuracy']:.2f} % on {row['images']} images  {row['run_dir']}")
    print(f"saved {doc['cv_dir']}/cv.json, oof.npz")


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
    rows, folder = run_compare(names, runs or [], seeds, runs_dir, out, parse_sets(set_),
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
    given = {"dataset": dataset, "model": model, "optimizer": optimizer, "batch_size": batch_size}
    cfg = api.make_config(recipe, **{k: v for k, v in given.items() if v is not None}, **parse_sets(set_))
    res = lr_find(cfg, out, start_lr, end_lr, steps)
    if as_json:
        print(json.dumps({k: v for k, v in res.items() if k not in ("lrs", "losses")}))
    else:
        print(f"suggested learning rate: {res['suggested_lr']:.3g} (steepest descent); "
              f"loss was lowest at {res['min_loss_lr']:.3g}\nsaved {res['plot']}")


_add_generative()


def _error_table() -> list[tuple[type[BaseException], int, str, bool]]:
    """How each kind of failure is shown: (exception, exit status, line format, shows a traceback
    under --debug). The first matching row wins; anything else is an internal error (exit 1)."""
    from typer import Abort

    from smallvision.errors import DivergenceError, Preempted, UsageError

    return [
        (UsageError, 2, "error: {}", True),  # bad input: a name, a file, a value
        (Preempted, 143, "{}", False),  # SIGTERM/SIGINT: state saved, the resume command printed
        (DivergenceError, 3, "error: training diverged: {}", True),
        (Abort, 130, "aborted", False),
        (Exception, 1, "error: internal error ({kind}): {} (rerun with --debug for details)", True),
    ]


def _command_path(args: list[str]) -> str:
    """'smallvision serve', 'smallvision gan train': the command `args` name, options left out."""
    cmd, path = typer.main.get_command(app), ["smallvision"]
    for a in args:
        sub = getattr(cmd, "commands", {}).get(a)
        if sub is None and not a.startswith("-"):
            break
        if sub is not None:
            cmd = sub
            path.append(a)
    return " ".join(path)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; every failure is one line on stderr and an exit status from
    `_error_table` (``--debug`` or SMALLVISION_DEBUG=1 shows the traceback instead)."""
    from typer import Exit, TyperException

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("SMALLVISION_DEBUG") == "1"
    if not debug:  # our warnings (skipped images, label gaps) as one line each, like errors
        warnings.formatwarning = lambda message, *_a, **_k: f"warning: {message}\n"
    try:
        rv = typer.main.get_command(app).main(args=args, prog_name="smallvision", standalone_mode=False,
                                              obj={"argv": args})
        sys.exit(rv if isinstance(rv, int) else 0)
    except TyperException as e:  # bad flags (typer vendors click): one line, like every other user error
        if not e.format_message():  # no arguments at all: the help text was shown
            sys.exit(0)
        where = e.ctx.command_path if getattr(e, "ctx", None) is not None else "smallvision"
        print(f"error: {e.format_message()} (see {where} --help)", file=sys.stderr)
        sys.exit(e.exit_code)
    except Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:
        if isinstance(e, ModuleNotFoundError):  # an extra's package: one line naming the extra
            from smallvision.extras import missing_extra

            e = missing_extra(e, _command_path(args)) or e
        for kind, status, fmt, traceback_on_debug in _error_table():
            if isinstance(e, kind):
                if debug and traceback_on_debug:
                    raise
                if os.environ.get("RANK", "0") == "0":  # under torchrun every rank fails alike: say it once
                    print(fmt.format(e, kind=type(e).__name__), file=sys.stderr)
                sys.exit(status)
        raise
