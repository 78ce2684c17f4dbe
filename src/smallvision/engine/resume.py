"""Everything an exact resume needs, in one pickle-free file per run: ``resume.safetensors``.

Tensors (model, optimiser state, EMA, GradScaler, torch/CUDA/NumPy RNG states) are
safetensors entries; the rest (loop counters, history, Python RNG, optimiser hyper-parameters)
is JSON in the metadata. The file is written atomically; the one it replaces is kept as
``resume.prev.safetensors`` so a damaged newest file falls back to the previous one.
"""

from __future__ import annotations

import json
import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallvision.errors import CheckpointError
from smallvision.io import atomic_write_bytes
from smallvision.modelfile import checkpoint_bytes, load_checkpoint
from smallvision.runfolder import RunFolder

RESUME, PREVIOUS = RunFolder.RESUME, RunFolder.RESUME_PREV


def _flatten_optimizer(sd: dict[str, Any], prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": sd["param_groups"], "state": {}}
    for idx, st in sd["state"].items():
        plain["state"][str(idx)] = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{prefix}.{idx}.{k}"] = v
            else:
                plain["state"][str(idx)][k] = v
    return tensors, plain


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], plain: dict[str, Any], prefix: str) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in plain["state"].items()}
    for key, t in tensors.items():
        if key.startswith(prefix + "."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = t
    return {"state": state, "param_groups": plain["param_groups"]}


def save_resume(run_dir: Path, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                scaler: Any, loop: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write the resume state: every module's and optimiser's state under its name (a classifier:
    ``model``, ``ema``, ``optim``; a GAN: ``G``, ``D``, ``optim_g``, ``optim_d``), RNGs, the loop."""
    tensors = {f"{name}.{k}": v for name, m in modules.items() for k, v in m.state_dict().items()}
    plains = {}
    for name, opt in optimizers.items():
        opt_t, plains[name] = _flatten_optimizer(opt.state_dict(), name)
        tensors.update(opt_t)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np_state[1].astype(np.int64))
    py_state = random.getstate()
    extra = {
        "loop": loop, "optimizers": plains,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": {"python": [py_state[0], list(py_state[1]), py_state[2]],
                "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])]},
    }
    blob = checkpoint_bytes(tensors, {**meta, "resume": extra})
    path, prev = run_dir / RESUME, run_dir / PREVIOUS
    if path.exists():  # keep one generation back, and RESUME in place at every instant of the save:
        link = run_dir / f".{PREVIOUS}.tmp"  # hard-link it to PREVIOUS (two renames' worth of time) ...
        link.unlink(missing_ok=True)
        try:
            os.link(path, link)
            os.replace(link, prev)
        except OSError:  # a file system without hard links: move it (a crash now leaves only PREVIOUS)
            os.replace(path, prev)
    atomic_write_bytes(path, blob)  # ... then the new state replaces RESUME atomically


def load_resume(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The newest intact resume state of a run; falls back to the previous one with a warning."""
    for stale in run_dir.glob(".*.tmp"):  # temp files of saves a crash interrupted
        stale.unlink(missing_ok=True)
    errors = []
    for name in (RESUME, PREVIOUS):
        p = run_dir / name
        if not p.exists():
            continue
        try:
            tensors, meta = load_checkpoint(p)
        except CheckpointError as e:
            errors.append(str(e))
            continue
        if errors:
            warnings.warn(f"{errors[0]}; resuming from the previous state {p.name} instead", stacklevel=2)
        return tensors, meta
    if errors:
        raise CheckpointError(f"{run_dir}: no intact resume state ({'; '.join(errors)})")
    raise CheckpointError(f"{run_dir}: nothing to resume (no {RESUME}); was it trained by smallvision?")


def restore(tensors: dict[str, torch.Tensor], meta: dict[str, Any], modules: dict[str, torch.nn.Module],
            optimizers: dict[str, torch.optim.Optimizer], scaler: Any, device: torch.device) -> dict[str, Any]:
    """Load states into the live objects (named as when saved); return the loop counters."""
    extra = meta["resume"]
    for name, m in modules.items():
        m.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")})
    plains = extra.get("optimizers") or {"optim": extra["optimizer"]}  # files from before several optimisers
    for name, opt in optimizers.items():
        opt.load_state_dict(_unflatten_optimizer({k: v.to(device) for k, v in tensors.items()}, plains[name], name))
    if scaler is not None and extra.get("scaler"):
        scaler.load_state_dict(extra["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    v, state, gauss = extra["rng"]["python"]
    random.setstate((v, tuple(state), gauss))
    kind, pos, has_gauss, cached = extra["rng"]["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    return extra["loop"]


def check_compatible(saved: dict[str, Any], now: dict[str, Any]) -> None:
    """Refuse a resume that changes a setting the schema marks as changing the result
    (config.py: ``result=True``); run-control settings (max_time, threads, device, ...) may change."""
    from smallvision.config import FIELDS
    from smallvision.errors import UsageError

    for key, val in now.items():
        if key not in FIELDS or not FIELDS[key].metadata["result"] or key not in saved:
            continue
        if json.dumps(saved[key], sort_keys=True) != json.dumps(val, sort_keys=True):
            raise UsageError(f"cannot resume with a changed {key!r} (run: {saved[key]!r}, now: {val!r}); "
                             "it would change the result. Start a new run instead")
