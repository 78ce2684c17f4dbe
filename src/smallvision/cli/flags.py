"""Command-line flags generated from the settings schema (config.py): one flag per `TrainConfig`
field, with its help and choices, so a new setting needs no CLI edit. Also the parsing of
``KEY=VALUE`` lists (``--model-arg``, ``--data-arg``, ``--set``) and comma lists.

Built without importing torch (``smallvision --help`` stays fast): registry choices are named,
not listed, in the help.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer

from smallvision.config import FIELDS, TrainConfig
from smallvision.errors import UsageError

_REGISTRY_HELP = {"model": "see `smallvision models`", "data set": "see `smallvision datasets`",
                  "optimizer": "sgd, adam, adamw, adadelta, rmsprop, or a plugin",
                  "scheduler": "constant, step, multistep, exponential, plateau, onecycle, cosine, or a plugin",
                  "augmentation": "none, flip, digits, crop, photo, erase",
                  "generative model": "see `smallvision models`",
                  "GAN loss": "bce (non-saturating), lsgan, hinge"}
_SINGULAR = {"model_args": "--model-arg", "data_args": "--data-arg"}  # repeatable KEY=VALUE flags


def _kind(cls: type, name: str) -> type:
    """The command-line type of a setting: bool, int, float, str, or list (KEY=VALUE, repeatable)."""
    hint = typing.get_type_hints(cls)[name]
    if typing.get_origin(hint) is dict:
        return list
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    base = typing.get_origin(args[0]) or args[0]
    return str if base is list else base  # comma-separated lists are parsed from text


def _help(f: dataclasses.Field) -> str:
    choices = f.metadata["choices"]
    if isinstance(choices, tuple):
        return f"{f.metadata['help']} [{'|'.join(choices)}]"
    if isinstance(choices, str):
        return f"{f.metadata['help']} ({_REGISTRY_HELP[choices]})"
    return f.metadata["help"]


def setting_parameters(cls: type = TrainConfig) -> list[inspect.Parameter]:
    """One keyword parameter per settable field of a schema dataclass, as typer reads them:
    Annotated[Optional[T], Option]."""
    params = []
    for f in dataclasses.fields(cls):
        if not f.metadata["flag"]:
            continue
        kind, flag = _kind(cls, f.name), "--" + f.name.replace("_", "-")
        decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [_SINGULAR.get(f.name, flag)]
        typ = Optional[list[str]] if kind is list else Optional[kind]
        opt = typer.Option(*decls, help=_help(f), metavar=f.metadata["metavar"] or None, show_default=False)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[typ, opt]))
    return params


def with_settings(*extra: inspect.Parameter, cls: type | None = TrainConfig
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command `extra` parameters plus one flag per setting of `cls` (None: `extra` only);
    its body takes ``**kw``."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        params = [*extra, *(setting_parameters(cls) if cls is not None else [])]
        fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        fn.__annotations__ = {p.name: p.annotation for p in params}
        return fn

    return deco


def option(name: str, typ: Any, default: Any, *decls: str, help: str = "") -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[typ, typer.Option(*decls, help=help)])


def parse_pairs(items: list[str] | None, flag: str) -> dict[str, Any] | None:
    """KEY=VALUE items -> {key: value}, the value read as JSON when it can be (3, true, [1, 2])."""
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, eq, val = item.partition("=")
        if not eq or not key:
            raise UsageError(f"{flag} takes KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(val)
        except json.JSONDecodeError:
            out[key] = val
    return out


def numbers(text: str, flag: str, n: int | None) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated numbers, got {text!r}") from None
    if n is not None and len(vals) != n:
        raise UsageError(f"{flag} takes {n} numbers, got {text!r}")
    return vals


def settings_from_flags(kw: dict[str, Any], cls: type = TrainConfig) -> dict[str, Any]:
    """The settings the user gave on the command line (flags left out are absent), as config values."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for name, val in kw.items():
        if name not in fields or not fields[name].metadata["flag"] or val is None:
            continue
        if name in _SINGULAR:
            val = parse_pairs(val, _SINGULAR[name])
        elif name == "teacher":  # run folders, comma-separated
            val = [p.strip() for p in val.split(",") if p.strip()]
        elif name == "normalize":
            val = numbers(val, "--normalize", 2)
        out[name] = val
    return out


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """--set KEY=VALUE pairs (VALUE parsed as JSON when it can be) as config overrides."""
    from smallvision.config import unknown_setting

    out: dict[str, Any] = {}
    for k, v in (parse_pairs(items, "--set") or {}).items():
        key, _, sub = k.partition(".")  # data_args.size=96, model_args.pretrained=true: one option of a table
        if key not in FIELDS:
            raise unknown_setting(k if not sub else key, "--set")
        if sub:
            out.setdefault(key, {})[sub] = v
        else:
            out[k] = v
    return out
