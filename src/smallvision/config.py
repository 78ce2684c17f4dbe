"""Typed training configuration: dataclass defaults < recipe or ``--config`` file < command-line flags.

One schema for every setting: each `TrainConfig` field carries its help text, the registry its
value must name (``choices``), a check, and whether it changes what the run computes
(``result``). From it come the ``train`` flags (cli/main.py), ``--set``, ``--config FILE``,
``print-config``, validation, and the resume rule (a result-changing setting is refused on
resume). The resolved config is written to every run folder (``config.json``) and into every
checkpoint, so a run can be repeated and a checkpoint explains itself.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smallvision.errors import UsageError
from smallvision.extras import installed
from smallvision.runfolder import RunFolder

Check = tuple[Callable[[Any], bool], str]  # (predicate, what it says when false: "must be > 0")


def setting(default: Any, help: str, *, choices: str | tuple[str, ...] | None = None, check: Check | None = None,
            result: bool = True, flag: bool = True, advanced: bool = False, metavar: str = "") -> Any:
    """A `TrainConfig` field with its schema. ``choices`` names a registry ("model", ...) or lists
    the values; ``result=False`` marks settings that may change on resume (they do not alter what
    the run computes); ``flag=False`` keeps it off the command line (set by the engine);
    ``advanced=True`` gives it no flag of its own either, but a user sets it with ``--set KEY=VALUE``
    or in a recipe (the schedules' parameters: the help stays short, nothing is lost)."""
    meta = {"help": help, "choices": choices, "check": check, "result": result, "flag": flag and not advanced,
            "advanced": advanced, "metavar": metavar}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


POSITIVE: Check = (lambda v: v > 0, "must be > 0")
NON_NEGATIVE: Check = (lambda v: v >= 0, "must be ≥ 0")
AT_LEAST_1: Check = (lambda v: v >= 1, "must be ≥ 1")
UNIT: Check = (lambda v: 0 <= v < 1, "must be in [0, 1)")


DEVICE: Check = (lambda v: v in ("auto", "cpu", "cuda", "mps") or v.startswith("cuda:"), "must be auto, cpu, cuda or mps")


def _checkpoint_rule_ok(v: str) -> bool:
    try:
        return not v or (float(v[:-1]) > 0 if v.endswith("s") else int(v) > 0)
    except ValueError:
        return False


def _weights_ok(v: str) -> bool:
    try:
        return all(float(w) > 0 for w in str(v).split(","))
    except ValueError:
        return False


def _unit_open(v: str) -> bool:
    try:
        return 0 < float(v) < 1
    except ValueError:
        return False


DURATION_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(v: str) -> float:
    """Seconds in ``90``, ``90s``, ``5m``, ``1.5h``; ValueError otherwise (``auto`` is the caller's)."""
    text = str(v).strip().lower()
    num = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(num):] or "s"
    if not num or unit not in DURATION_UNITS:
        raise ValueError(v)
    seconds = float(num) * DURATION_UNITS[unit]
    if not math.isfinite(seconds):
        raise ValueError(v)
    return seconds


def _time_ok(v: str) -> bool:
    if v in ("", "auto"):
        return True
    try:
        return parse_duration(v) > 0
    except ValueError:
        return False


def _val_size_ok(v: float) -> bool:
    """A fraction in [0, 1) or a whole count ≥ 1: 1.5 is neither (it used to keep ONE image)."""
    return math.isfinite(v) and (0 <= v < 1 or (v >= 1 and float(v).is_integer()))


@dataclass(frozen=True)
class DatasetSpec:
    """``mnist`` -> (mnist, None); ``folder:~/pets`` -> (folder, ~/pets); the older comma form
    ``idx:DIR,train=...`` -> its options too (``--data-arg`` is the current way to give them)."""

    name: str
    arg: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str, positional: str | None = None, strict: bool = True) -> DatasetSpec:
        """ARG is a path taken verbatim when it exists; otherwise ``ARG,KEY=VALUE,...`` is the older
        comma form (a bare extra part is the entry's `positional` option). `strict=False`: a part
        that only the entry can read (``csv:train.csv,test.csv``) leaves ARG whole, for callers that
        want the name (the entry's loader parses it with its positional option)."""
        name, _, arg = spec.partition(":")
        if not arg or "," not in arg and "=" not in arg or Path(arg).expanduser().exists():
            return cls(name, arg or None)
        head, *rest = arg.split(",")
        opts: dict[str, str] = {}
        if "=" in head:
            head, rest = "", [head, *rest]
        for part in rest:
            key, eq, val = part.partition("=")
            if not eq and positional and positional not in opts:
                key, val = positional, part
            elif not eq and not strict:
                return cls(name, arg)
            elif not eq:
                raise UsageError(f"{name}: cannot read option {part!r}; give options as --data-arg KEY=VALUE")
            opts[key] = val
        return cls(name, head or None, opts)


def split_spec(spec: str, positional: str | None = None) -> tuple[str, str | None, dict[str, str]]:
    """(name, arg, legacy options) of `DatasetSpec.parse`."""
    s = DatasetSpec.parse(spec, positional)
    return s.name, s.arg, dict(s.options)


def redefault(cls: type, name: str, default: Any, **meta: Any) -> Any:
    """`cls`'s field `name` with another default (and any schema entries changed: help, check,
    choices): how a command's schema keeps the shared setting's place and flag but its own value."""
    f = cls.__dataclass_fields__[name]
    m = {**f.metadata, **meta}
    return setting(default, m["help"], choices=m["choices"], check=m["check"], result=m["result"], flag=m["flag"],
                   advanced=m["advanced"], metavar=m["metavar"])


@dataclass
class RunSettings:
    """What every training command shares (``train`` and ``gan|autoencoder|diffusion train``): the
    data, the model, the optimiser's rate, batch and epochs, the run's seed,
    device, precision, threads, time limit, report and name. `TrainConfig` (here) and `GenConfig`
    (generative/config.py) add only their own; a subclass changes a shared setting's default with
    `redefault`. (``sampler`` is not shared: the classifier's training order and the flow's ODE
    solver are different settings with the same name.)"""

    dataset: str = setting("mnist", "Data set NAME or NAME:PATH (mnist, fashion-mnist, kmnist, cifar10, digits, "
                           "idx:DIR, csv:FILE, folder:DIR, fake, ...); options go in --data-arg.", choices="data set")
    data_args: dict[str, Any] = setting({}, "Data-set option KEY=VALUE, repeatable (folder: size, workers, stream; "
                                        "csv: test; fake: shape, classes, train, test).", metavar="KEY=VALUE")
    data_dir: str | None = setting(None, "Folder searched first for data files.", result=False)
    train_limit: int = setting(0, "Train on a seeded subset of N images (0: all).", check=NON_NEGATIVE)
    model: str = setting("cnn-fast", "A registered model (see `smallvision models`).", choices="model")
    model_args: dict[str, Any] = setting({}, "Model option KEY=VALUE (JSON value), repeatable.", metavar="KEY=VALUE")
    lr: float = setting(1e-3, "Peak learning rate.", check=POSITIVE)
    batch_size: int = setting(64, "Batch size.", check=AT_LEAST_1)
    epochs: int = setting(10, "Epochs.", check=AT_LEAST_1)
    seed: int = setting(0, "Seed of everything (weights, split, order, augmentation).")
    device: str = setting("auto", "auto, cpu, cuda, cuda:N or mps.", check=DEVICE, result=False)
    precision: str = setting("auto", "auto (bf16 on CUDA, else fp32), fast (bf16 where native), fp32, bf16, fp16.",
                             choices=("auto", "fast", "fp32", "bf16", "fp16"))
    channels_last: bool = setting(False, "Convolutions in the channels_last memory format (often faster in bf16, "
                                  "not always: benchmarks/generative_layout.py).")
    threads: int = setting(0, "CPU threads for torch (0: torch's default).", check=NON_NEGATIVE, result=False)
    max_time: float = setting(0.0, "Stop after this many seconds of training (0: off).", check=NON_NEGATIVE,
                              result=False)
    report: bool = setting(True, "Write the run report (HTML/MD/JSON + PNGs).", result=False)
    name: str = setting("", "Run folder name (default: recipe or dataset-model plus a time stamp).", result=False)

    @property
    def spec(self) -> DatasetSpec:
        """`dataset` parsed once: its registry name, path and any options of the older comma form."""
        return DatasetSpec.parse(self.dataset, strict=False)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainConfig(RunSettings):
    # --- data
    val_size: float = setting(0.1, "Validation split from the training set: a fraction in [0, 1) or a whole count; "
                              "0: none.", check=(_val_size_ok, "must be a fraction in [0, 1) or a whole count ≥ 1"))
    # the folds: set by `smallvision cv` (and `labels`) for each fold's run, not flags of their own
    folds: int = setting(0, "Cross-validation: split fold_split into K stratified folds, train on all but `fold` "
                         "and test on it (0: off).", check=(lambda v: v == 0 or v >= 2, "must be 0 (off) or at least 2"),
                         flag=False)
    fold: int = setting(0, "With folds: the fold held out as this run's test set (0 to K-1).", check=NON_NEGATIVE,
                        flag=False)
    fold_split: str = setting("train", "With folds: the split the folds are made of.", choices=("train", "test"),
                              flag=False)
    normalize: list[Any] | None = setting(None, "MEAN,STD on 0-1 pixels (default: the data set's own).",
                                          metavar="MEAN,STD")
    data_order: str = setting("seeded", "seeded: a function of (seed, epoch); torch: replay DataLoader(shuffle=True)'s "
                              "order.", choices=("seeded", "torch"), advanced=True)
    shift: int = setting(0, "Random-shift augmentation, pixels.", check=NON_NEGATIVE)
    hflip: bool = setting(False, "Random horizontal flips (not for digits).")
    augment: str = setting("none", "Augmentation preset (see README).", choices="augmentation")
    mixup: float = setting(0.0, "Mixup α: each batch blended with a shuffled copy of itself, λ ~ Beta(α, α), the loss "
                           "mixed alike (timm uses 0.8); 0 = off.", check=NON_NEGATIVE)
    cutmix: float = setting(0.0, "CutMix α: a box of a shuffled copy pasted into each image, area 1 - λ; with --mixup, "
                            "half the batches each (timm uses 1.0); 0 = off.", check=NON_NEGATIVE)
    tta: bool = setting(False, "Test-time augmentation: average the logits over the views training showed.")
    threshold: str = setting("global", "Multi-label sets: the decision threshold, chosen on the validation split to "
                             "maximise macro-F1: global (one for every class), per-class, or a fixed number in (0, 1).",
                             check=(lambda v: v in ("global", "per-class") or _unit_open(v),
                                    "takes global, per-class or a number in (0, 1)"))
    calibrate: bool = setting(True, "After training, fit a temperature on the validation split (temperature "
                              "scaling) so the probabilities match the accuracy; accuracy is unchanged; "
                              "nothing happens without a validation split.")
    # "none of these" (ood.py, docs/ood.md); not flags (`--set ood=vim`): the default was measured on every
    # set of the OOD benchmark, and predict/serve choose another operating point from the stored quantiles
    ood: str = setting("vim-energy", "\"None of these\": the out-of-distribution detector fitted after training: "
                       "vim-energy, vim, mahalanobis, knn, energy, msp, or none.",
                       choices=("vim-energy", "vim", "mahalanobis", "knn", "energy", "msp", "none"), flag=False)
    # 0.97, not 0.95: a quantile of a few hundred validation scores moves by about a point, and at 0.95
    # the five runs of benchmarks/results/ood.md refused 4.5-6.0 % of their own test images; 0.97 keeps it under 5 %
    accept: float = setting(0.97, "The share of validation images the OOD threshold accepts; images scoring beyond it "
                            "are answered \"none of these\".", check=(lambda v: 0 < v < 1, "must be in (0, 1)"),
                            flag=False)
    ema: float = setting(0.0, "EMA decay of weights per step (e.g. 0.999); 0 = off.", check=UNIT)
    # --- model
    freeze: bool = setting(False, "Transfer learning: train only the new head (BN statistics kept).")
    unfreeze_after: int = setting(0, "With --freeze: two phases, as fastai's fine_tune: the head alone for this many "
                                  "epochs, then everything, each phase its own cycle of the schedule (0: stay frozen).",
                                  check=NON_NEGATIVE)
    unfreeze_lr: float = setting(1.0, "Phase 2 (after --unfreeze-after): peak learning rate as a fraction of --lr.",
                                 check=POSITIVE)
    freeze_bn: bool = setting(False, "Whenever the backbone trains (no --freeze, or after --unfreeze-after): keep its "
                              "BatchNorm in inference mode on its pretrained statistics (Keras's fine-tuning advice).")
    cache_features: bool = setting(False, "With --freeze: run the backbone once, train the head on cached features "
                                   "(with --unfreeze-after: phase 1 only).")
    head: str = setting("sgd", "With --cache-features: how phase 1 trains the head. sgd: the optimiser and schedule "
                        "for --unfreeze-after epochs; exact: an L2-regularised multinomial logistic regression solved "
                        "to convergence (L-BFGS) on all cached features in one step, its strength chosen by 5-fold "
                        "cross-validation on the training split (use --unfreeze-after 1).", choices=("sgd", "exact"))
    top_stages: int = setting(0, "With --cache-features and --unfreeze-after: phase 2 trains only the backbone's last N "
                              "stages and the head (efficientnet-lite: 7 stages), on the activations below them, "
                              "computed once with the features (no augmentation; the backward pass stops there); "
                              "0: the whole network, on images.", check=NON_NEGATIVE)
    select: str = setting("best", "Model selection on validation: best (the best evaluated epoch) or phases (only "
                          "the end of each phase is evaluated: the head, then the fine-tuned model, kept unless "
                          "the head is more accurate; no choosing among epochs on a small validation split).",
                          choices=("best", "phases"))
    time: str = setting("", "Time budget for a folder of photos with the default recipe (photo-auto): 90s, 5m, 1h, "
                        "or auto (50 s + 0.08 s per training photo); the number of fine-tuning epochs is what fits in "
                        "it at this machine's measured speed. Other recipes: use --max-time.", metavar="DURATION",
                        check=(_time_ok, "takes a duration such as 90s, 5m or 1h, or auto"), result=False)
    reasons: dict[str, str] = setting({}, "Why the data rules set what they set (written by the recipe's rules).",
                                      flag=False, result=False)
    backbone_lr: float = setting(1.0, "Learning-rate multiplier for the backbone (with --lr-groups: for its earliest "
                                 "group; later groups rise geometrically towards the head's 1).", check=POSITIVE)
    lr_groups: int = setting(1, "Discriminative learning rates: split the backbone into N groups, early layers "
                             "slowest (fastai's slice(lr * backbone_lr, lr)).", check=AT_LEAST_1)
    # --- optimisation
    optimizer: str = setting("adam", "Optimiser (see `smallvision print-config --help`).", choices="optimizer")
    momentum: float = setting(0.0, "Momentum (sgd, rmsprop).", check=NON_NEGATIVE)
    nesterov: bool = setting(False, "Nesterov momentum (sgd).")
    weight_decay: float = setting(0.0, "Weight decay.", check=NON_NEGATIVE)
    label_smoothing: float = setting(0.0, "Label smoothing.", check=UNIT)
    class_weights: str = setting("none", "Loss weight of each class, for imbalanced data: none, auto (the square root of "
                                 "inverse class frequency in the training split, scaled so the average image keeps "
                                 "weight 1) or W1,W2,... (one per class).",
                                 check=(lambda v: v in ("none", "auto") or _weights_ok(v),
                                        "takes none, auto or comma-separated positive numbers (one per class)"))
    sampler: str = setting("shuffle", "Training order: shuffle (each image once per epoch) or balanced (draws with "
                           "replacement, every class the same share of each epoch: for imbalanced data).",
                           choices=("shuffle", "balanced"))
    batch_size: int = redefault(RunSettings, "batch_size", 64, help="Batch size per step; 0 = the whole training set "
                                "(full batch).", check=(lambda v: v >= 0, "must be ≥ 1 (or 0 for full batch)"))
    epochs: int = redefault(RunSettings, "epochs", 10, help="Epochs (full-batch: steps).")
    # --- learning-rate schedule (a pure function of the step, optim/schedules.py)
    scheduler: str = setting("constant", "Learning-rate schedule; its parameters (step_size, gamma, milestones, "
                             "pct_start, final_lr_ratio, plateau_patience) with --set KEY=VALUE or in a recipe.",
                             choices="scheduler")
    warmup_epochs: float = setting(0.0, "Linear warm-up, epochs.", check=NON_NEGATIVE)
    step_size: int = setting(7, "step scheduler: epochs between decays.", check=AT_LEAST_1, advanced=True)
    gamma: float = setting(0.1, "Decay factor for step/multistep/exponential/plateau.", advanced=True)
    milestones: list[int] = setting([30, 80], "multistep: epochs, a JSON list ([30, 80]).", metavar="E1,E2,...", advanced=True)
    pct_start: float = setting(0.25, "onecycle: fraction of steps spent warming up.", check=UNIT, advanced=True)
    final_lr_ratio: float = setting(0.0, "onecycle/cosine: last lr as a fraction of lr.", check=NON_NEGATIVE, advanced=True)
    plateau_patience: int = setting(2, "plateau: evaluations without a better validation loss.", check=NON_NEGATIVE, advanced=True)
    teacher: list[str] = setting([], "Knowledge distillation: trained run folders (comma-separated) whose averaged "
                                 "softened probabilities the student also learns.", metavar="RUN,RUN,...")
    distill_alpha: float = setting(0.5, "With --teacher: the soft (teacher) term's weight in the loss (1: the labels' "
                                   "term is off).", check=(lambda v: 0 <= v <= 1, "must be in [0, 1]"))
    distill_temperature: float = setting(2.0, "With --teacher: the softening temperature T.", check=POSITIVE)
    average_last: int = setting(0, "Checkpoint averaging: the final weights are the mean of the weights at the end of "
                                "each of the last K epochs (BatchNorm statistics averaged too), replacing the selected "
                                "ones; 0 = off.", check=NON_NEGATIVE)
    # --- run control
    deterministic: bool = setting(False, "Deterministic kernels (torch.use_deterministic_algorithms).")
    compile: bool = setting(False, "torch.compile the model (weights are saved from the uncompiled one).")
    sync_bn: bool = setting(False, "Several processes (torchrun, --nproc): synchronise BatchNorm statistics across "
                            "them (SyncBatchNorm; CUDA only).")
    patience: int = setting(0, "Early stopping after N evaluations without a better validation accuracy (0: off).",
                            check=NON_NEGATIVE, result=False)
    target_accuracy: float = setting(0.0, "Stop at this validation accuracy, % (0: off).",
                                     check=(lambda v: 0 <= v <= 100, "is a percentage"), result=False)
    eval_every: int = setting(1, "Validate every N epochs.", check=AT_LEAST_1)
    test: bool = setting(True, "Read the test set once at the end (`smallvision tune`'s trials do not: they choose on "
                         "validation, and only the final run is tested).", result=False, flag=False)
    test_every_epoch: bool = setting(False, "Also report test accuracy per epoch (reported, never used).",
                                     result=False)
    checkpoint_every: str = setting("", "Also save resume state every N steps (500) or seconds (60s).", result=False,
                                    check=(_checkpoint_rule_ok, "takes STEPS or SECONDS followed by s (e.g. 500 or 60s)"))
    tensorboard: bool = setting(False, "Also write TensorBoard event files (runs/<name>/tensorboard).", result=False)
    recipe: str = setting("", "The recipe this came from, for the record.", flag=False, result=False)

    def validate(self) -> TrainConfig:
        validate_fields(self)
        extra = [
            (0 < self.gamma <= 1 or self.scheduler == "constant", f"--gamma must be in (0, 1], got {self.gamma:g}"),
            (self.normalize is None or len(self.normalize) == 2, "normalize must be [mean, std]"),
            (self.normalize is None or min(self.normalize[1] if isinstance(self.normalize[1], list)
                                           else [self.normalize[1]]) > 0, "normalize std must be > 0"),
            (self.folds == 0 or self.fold < self.folds, f"--fold must be 0-{self.folds - 1} with --folds {self.folds}"),
            (not (self.patience or self.target_accuracy) or self.val_size != 0,
             "--patience and --target-accuracy watch the validation split; set --val-size > 0"),
            (not self.tensorboard or installed("tensorboard"),
             "--tensorboard needs the 'tensorboard' extra: pip install 'smallvision[tensorboard]'"),
            (isinstance(self.model_args, dict) and isinstance(self.data_args, dict),
             "model_args and data_args are tables of KEY = VALUE"),
        ]
        for ok, msg in extra:
            if not ok:
                raise UsageError(msg)
        return self

    def result_dict(self) -> dict[str, Any]:
        """Only the settings that change what the run computes (what resume compares)."""
        return {k: v for k, v in self.to_dict().items() if FIELDS[k].metadata["result"]}


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def validate_fields(obj: Any) -> None:
    """Each field's check and choices, from its schema (any dataclass built with `setting`)."""
    for f in dataclasses.fields(obj):
        check, v = f.metadata["check"], getattr(obj, f.name)
        if check is not None and not check[0](v):
            raise UsageError(f"{flag_name(f.name)} {check[1]}, got {v:g}" if isinstance(v, float)
                             else f"{flag_name(f.name)} {check[1]}, got {v!r}")
        if f.metadata["choices"] is not None:
            check_choice(f, v)


def flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def check_choice(f: dataclasses.Field, value: Any) -> None:
    """A value among a fixed tuple, or a name in the field's registry (close matches when not)."""
    c = f.metadata["choices"]
    if isinstance(c, tuple):
        if value not in c:
            raise UsageError(f"{flag_name(f.name)} must be {', '.join(c[:-1])} or {c[-1]}, got {value!r}")
        return
    from smallvision.registry import registry_of

    name = DatasetSpec.parse(value, strict=False).name if c == "data set" else value
    registry_of(c).entry(name)


# names users bring from Keras, Lightning, timm and the tutorials
SYNONYMS = {"learning_rate": "lr", "bs": "batch_size", "batch": "batch_size", "num_epochs": "epochs",
            "n_epochs": "epochs", "max_epochs": "epochs", "wd": "weight_decay", "optim": "optimizer",
            "lr_scheduler": "scheduler", "freeze_epochs": "unfreeze_after", "sched": "scheduler", "arch": "model", "data": "dataset", "amp": "precision"}


def unknown_setting(key: str, source: str, fields: dict[str, Any] | None = None) -> UsageError:
    """'SOURCE: unknown setting KEY; did you mean ...?' among `fields` (default: `TrainConfig`'s)."""
    fields = FIELDS if fields is None else fields
    close = ([SYNONYMS[key]] if SYNONYMS.get(key) in fields else []) or difflib.get_close_matches(key, list(fields), n=2)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return UsageError(f"{source}: unknown setting {key!r}{hint}")


def merge(base: TrainConfig, overrides: dict[str, Any], source: str,
          portable: Callable[[str], tuple[str, ...]] = lambda kind: ()) -> TrainConfig:
    """`base` with `overrides` applied, not yet validated (`recipes.resolve` validates once);
    unknown keys are an error naming the source. Another model drops the base's model options
    (they were for its own model) and another data set its data options, except those
    `portable(kind)` names for a data set of the same kind (a recipe's folder size holds for your
    folder); the same model, or the same data set, changes only the options given."""
    overrides = dict(overrides)
    for key in overrides:
        if key not in FIELDS:
            raise unknown_setting(key, source)
    for key, owner in (("model_args", "model"), ("data_args", "dataset")):
        if key in overrides and not isinstance(overrides[key], dict):
            raise UsageError(f"{source}: {key} is a table of KEY=VALUE options, got {overrides[key]!r} (on the command "
                             f"line: --{key.replace('_args', '-arg')} KEY=VALUE, or --set {key}.KEY=VALUE)")
        new = overrides.get(owner, getattr(base, owner))
        if new != getattr(base, owner):
            kind = DatasetSpec.parse(new, strict=False).name if key == "data_args" and isinstance(new, str) else None
            keep = portable(kind) if kind and kind == base.spec.name and base.data_args else ()
            kept = {k: v for k, v in base.data_args.items() if k in keep} if key == "data_args" else {}
            overrides[key] = {**kept, **overrides.get(key, {})}
        elif overrides.get(key):
            overrides[key] = {**getattr(base, key), **overrides[key]}
    return dataclasses.replace(base, **overrides)


def from_dict(d: dict[str, Any]) -> TrainConfig:
    """A config from a saved one (config.json, a checkpoint): keys this version does not know are ignored."""
    return merge(TrainConfig(), {k: v for k, v in d.items() if k in FIELDS}, "config")


RECORD_ONLY = {"resolved", "command", "commands", "resolved_device"}  # what config.json adds to the settings


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a file: a recipe TOML (``[train]`` table, or top-level keys) or a run's
    config.json. Unknown keys are an error naming the file; what a run folder records beside the
    settings (the command, the resolved device) is skipped."""
    p = Path(path).expanduser()
    if p.is_dir():  # a run folder: its config.json
        p = p / RunFolder.CONFIG
    if not p.is_file():
        raise UsageError(f"--config {path}: no such file")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".json":
            doc = json.loads(text)
        else:
            import tomllib

            doc = tomllib.loads(text)
    except ValueError as e:  # JSONDecodeError and TOMLDecodeError are both ValueErrors
        raise UsageError(f"--config {p}: not valid {'JSON' if p.suffix == '.json' else 'TOML'} ({e})") from None
    settings = doc.get("train", doc) if isinstance(doc, dict) else None
    if not isinstance(settings, dict):
        raise UsageError(f"--config {p}: expected a table of settings")
    settings = {k: v for k, v in settings.items() if k not in RECORD_ONLY}
    merge(TrainConfig(), settings, f"--config {p}")  # unknown keys: one line naming the file
    return settings


def to_toml(cfg: TrainConfig, description: str = "") -> str:
    """The recipe format: what `print-config` writes and `--config` / recipes read back."""
    import tomli_w

    doc: dict[str, Any] = {"description": description} if description else {}
    doc["train"] = {k: v for k, v in cfg.to_dict().items() if v is not None}
    return tomli_w.dumps(doc)
