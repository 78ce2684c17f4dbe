"""`smallvision gan|autoencoder|diffusion ...`: thin over smallvision.generative; each family's
train flags come from its own settings class (`GanConfig`, `FlowConfig`, `AutoencoderConfig`), as
`train`'s come from `TrainConfig`."""

from __future__ import annotations

import inspect
import json
import shlex
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from smallvision.cli.flags import option, settings_from_flags, with_settings
from smallvision.generative.config import CONFIGS, AutoencoderConfig, FlowConfig, GanConfig

gan_app = typer.Typer(help="Generative adversarial networks: train, sample, score.", no_args_is_help=True)
ae_app = typer.Typer(help="Autoencoders (plain, convolutional, variational, denoising): train, sample, reconstruct.",
                     no_args_is_help=True)
diffusion_app = typer.Typer(help="Flow-matching (rectified flow) diffusion models with a few-step sampler: train, "
                            "sample, score.", no_args_is_help=True)

_COMMON = (
    inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context),  # the argv main() received
    option("recipe", Optional[str], None, "--recipe", help="A named recipe (see `smallvision recipes`); "
           "--config and flags override it."),
    option("config", Optional[Path], None, "--config", help="Settings from a file: a run's config.json or a TOML table."),
    option("resume", Optional[Path], None, "--resume", help="Continue a stopped run folder from where it stopped."),
    option("runs_dir", Path, Path("runs"), "--runs-dir", help="Where run folders go."),
    option("as_json", bool, False, "--json", help="Print the final summary as one JSON line."),
)


def _train(kind: str, kw: dict[str, Any]) -> None:
    from smallvision.engine.progress import Progress
    from smallvision.generative import train_generative

    over = settings_from_flags(kw, CONFIGS[kind])
    command = _command_line(kw["ctx"])
    base = _read(kw["config"], kind) if kw["config"] else None
    summary = train_generative(kind, kw["recipe"], base, kw["runs_dir"], kw["resume"], command,
                               Progress(enabled=not kw["as_json"]), **over)
    _print(summary, kw["as_json"])


def _command_line(ctx: typer.Context) -> str:
    """The command as `main(argv)` received it (kept on the root context), for the run's record."""
    return "smallvision " + shlex.join((ctx.find_root().obj or {}).get("argv", []))


def _read(path: Path, kind: str) -> dict[str, Any]:
    """A generative run's config.json (or a TOML file: a [gan] / [autoencoder] / [diffusion] table, or
    top-level settings)."""
    import tomllib

    from smallvision.errors import UsageError
    from smallvision.runfolder import RunFolder

    p = path / RunFolder.CONFIG if path.is_dir() else path
    if not p.is_file():
        raise UsageError(f"--config {path}: no such file")
    try:
        doc = json.loads(p.read_text()) if p.suffix == ".json" else tomllib.loads(p.read_text())
    except ValueError as e:
        raise UsageError(f"--config {p}: cannot read it ({e})") from None
    doc = doc.get(kind, doc) if isinstance(doc, dict) else {}
    doc = {k: v for k, v in doc.items() if k not in ("resolved", "command", "description", "version")}
    if p.suffix == ".json":  # a run's record: what an older version wrote beside this family's settings goes
        from smallvision.generative.config import from_record

        doc = from_record(kind, doc, str(p))
    return doc


def _print(res: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(res))
        return
    score = res.get("score")
    for k, v in res.items():
        if k != "score":
            print(f"{k}: {v}")
    if score:
        from smallvision.generative.score import score_text

        print(score_text(score))


@gan_app.command("train")
@with_settings(*_COMMON, cls=GanConfig)
def gan_train(**kw: Any) -> None:
    """Train a GAN (gan-mlp, dcgan, dcgan-deep-d; bce, lsgan or hinge loss), e.g. --recipe gan-nolabel;
    writes runs/<name>/ with per-epoch sample grids, a GIF, loss curves, checkpoints, the quality
    score and a report."""
    _train("gan", kw)


def _sample_options(what: str, *middle: inspect.Parameter) -> tuple[inspect.Parameter, ...]:
    """The options `gan sample` and `diffusion sample` share (`middle`: the flow's own, in their place)."""
    return (
        inspect.Parameter("checkpoint", inspect.Parameter.KEYWORD_ONLY,
                          annotation=Annotated[str, typer.Argument(help=f"A {what} run folder or its "
                                                                        "generator.safetensors.")]),
        option("n", int, 64, "-n", help="How many samples."),
        option("seed", int, 0, "--seed", help="Noise seed: the same seed, the same images."),
        option("label", Optional[int], None, "--label", help="Conditional models: draw this class only."),
        *middle,
        option("out", Optional[Path], None, "--out", help="The grid's PNG (default: sample_seed<S>.png in the run)."),
        option("score", bool, False, "--score/--no-score", help="Also score the samples."),
        option("scorer", Optional[str], None, "--scorer",
               help="Scoring classifier (default: the data set's, trained once)."),
        option("runs_dir", Path, Path("runs"), "--runs-dir", help="Where the default scorer is kept (_scorers/)."),
        option("device", str, "auto", "--device", help="auto, cpu, cuda, mps"),
        option("as_json", bool, False, "--json"),
    )


@gan_app.command("sample")
@with_settings(*_sample_options(
    "GAN", option("truncation", Optional[float], None, "--truncation",
                  help="Truncation trick: noise entries beyond ±T drawn again (default: the run's; 0: off).")),
    cls=None)
def gan_sample(**kw: Any) -> None:
    """Write a grid of samples from a trained generator; --score adds the quality figures."""
    from smallvision.generative.gan import sample

    _print(sample(kw["checkpoint"], kw["n"], kw["seed"], kw["out"], kw["label"], kw["device"], kw["score"],
                  kw["scorer"], kw["runs_dir"], truncation=kw["truncation"]), kw["as_json"])


@ae_app.command("train")
@with_settings(*_COMMON, cls=AutoencoderConfig)
def ae_train(**kw: Any) -> None:
    """Train an autoencoder (ae-mlp, ae-conv, vae-mlp, vae-conv; --denoise σ); writes reconstructions
    per epoch, the latent plot, loss curves, checkpoints and a report."""
    _train("autoencoder", kw)


def _ae_options(*middle: inspect.Parameter) -> tuple[inspect.Parameter, ...]:
    """The options `autoencoder sample` and `autoencoder reconstruct` share (`middle`: their own)."""
    return (
        inspect.Parameter("checkpoint", inspect.Parameter.KEYWORD_ONLY,
                          annotation=Annotated[str, typer.Argument(help="An autoencoder run folder or its "
                                                                        "autoencoder.safetensors.")]),
        *middle,
        option("out", Optional[Path], None, "--out", help="The grid's PNG (default: in the run folder)."),
        option("device", str, "auto", "--device", help="auto, cpu, cuda, mps"),
        option("as_json", bool, False, "--json"),
    )


@ae_app.command("sample")
@with_settings(*_ae_options(option("n", int, 64, "-n", help="How many samples."),
                            option("seed", int, 0, "--seed", help="Code seed: the same seed, the same images.")),
               cls=None)
def ae_sample(**kw: Any) -> None:
    """Decode random codes into a grid of new images."""
    from smallvision.generative.autoencoder import sample

    _print(sample(kw["checkpoint"], kw["n"], kw["seed"], kw["out"], kw["device"]), kw["as_json"])


@ae_app.command("reconstruct")
@with_settings(*_ae_options(
    inspect.Parameter("files", inspect.Parameter.KEYWORD_ONLY, default=None,
                      annotation=Annotated[Optional[list[str]],
                                           typer.Argument(help="Image files (default: the first -n test images).")]),
    option("n", int, 16, "-n", help="Test images when no file is given.")), cls=None)
def ae_reconstruct(**kw: Any) -> None:
    """Input row / output row for your images or the test set, with the error per pixel."""
    from smallvision.generative.autoencoder import reconstruct

    _print(reconstruct(kw["checkpoint"], kw["files"], kw["n"], kw["out"], kw["device"]), kw["as_json"])


@diffusion_app.command("train")
@with_settings(*_COMMON, cls=FlowConfig)
def diffusion_train(**kw: Any) -> None:
    """Train a flow-matching model (unet; --conditional for classifier-free guidance, --clusters K
    to guide without labels); writes per-epoch sample grids, a GIF, the loss curve, checkpoints,
    the quality score and a report."""
    _train("diffusion", kw)


@diffusion_app.command("sample")
@with_settings(*_sample_options(
    "diffusion",
    option("steps", Optional[int], None, "--steps", help="Solver steps (default: the run's)."),
    option("sampler", Optional[str], None, "--sampler", help="euler or heun (default: the run's)."),
    option("guidance", Optional[float], None, "--guidance", help="Classifier-free guidance w (default: the run's).")),
    cls=None)
def diffusion_sample(**kw: Any) -> None:
    """Write a grid of samples from a trained flow model; --score adds the quality figures."""
    from smallvision.generative.diffusion import sample

    _print(sample(kw["checkpoint"], kw["n"], kw["seed"], kw["out"], kw["label"], kw["device"], kw["steps"],
                  kw["sampler"], kw["guidance"], kw["score"], kw["scorer"], kw["runs_dir"]), kw["as_json"])


def _choose_options(what: str, knob: str, defaults: str) -> tuple[inspect.Parameter, ...]:
    """`gan choose`'s and `diffusion choose`'s options (generative/choose.py's arguments)."""
    return (
        inspect.Parameter("run", inspect.Parameter.KEYWORD_ONLY,
                          annotation=Annotated[str, typer.Argument(help=f"A finished {what} run folder.")]),
        option("values", Optional[str], None, "--values", help=f"The {knob} values tried, comma-separated "
               f"(default: {defaults})."),
        option("samples", int, 2000, "--samples", help="Samples per value (noise seed --seed)."),
        option("seed", int, 1000, "--seed", help="Noise seed of the validation samples (not the reported score's 0)."),
        option("reference", int, 10000, "--reference", help="Seeded training images the samples are compared with."),
        option("rule", str, "distance", "--rule", help="distance: the lowest Fréchet distance; targets: the lowest "
               "among the values meeting IS ≥ --min-is, ≥ 90 % confident, every class ≥ 8 %, a distance ≤ 2.5× the "
               "validation floor."),
        option("min_is", float, 9.3, "--min-is", help="--rule targets: the least Inception Score."),
        option("device", str, "auto", "--device", help="auto, cpu, cuda, mps"),
        option("as_json", bool, False, "--json"),
    )


def _choose(kind: str, kw: dict[str, Any]) -> None:
    from smallvision.cli.flags import numbers
    from smallvision.generative.choose import choose

    values = numbers(kw["values"], "--values", None) if kw["values"] else None
    r = choose(kw["run"], kind, values, kw["samples"], kw["seed"], kw["reference"], kw["rule"], kw["min_is"],
               device=kw["device"])
    if kw["as_json"]:
        print(json.dumps(r))
        return
    for row in r["rows"]:
        print("  ".join(f"{k} {v}" for k, v in row.items()))
    print(f"chosen: {r['knob']} {r['chosen']:g} ({r['why']}); written to {r['run']}/choice.json")


@gan_app.command("choose")
@with_settings(*_choose_options("GAN", "truncation", "0,2.5,2,1.75,1.5"), cls=None)
def gan_choose(**kw: Any) -> None:
    """Choose the truncation on a validation protocol (training images, other noise), not on the
    test score; writes choice.json in the run."""
    _choose("gan", kw)


@diffusion_app.command("choose")
@with_settings(*_choose_options("guided flow", "guidance", "1,1.5,2,3"), cls=None)
def diffusion_choose(**kw: Any) -> None:
    """Choose the guidance scale on a validation protocol (training images, other noise), not on
    the test score; writes choice.json in the run."""
    _choose("diffusion", kw)
