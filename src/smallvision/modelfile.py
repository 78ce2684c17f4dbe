"""A trained model as a file: the one home of its reading side (and its writer), imported by
`predict`, `serve`, `export`, `evaluate` and the trainer alike, none of which it imports.

A checkpoint is one pickle-free ``.safetensors`` file: the weights (from the unwrapped,
uncompiled model) and, in its metadata, a JSON document: model name and arguments, dataset info
(classes, size, the normalisation used), the resolved config, metrics and versions, plus a
SHA-256 of the tensor data. Loading parses JSON and raw tensors only: no code runs, and a
truncated or bit-flipped file is detected. An exported ``.onnx`` file carries the same document
(`OnnxModel`); `load_any` opens either; `model_card` and `preprocessing` describe a model to a
person and to tools other than smallvision.
"""

from __future__ import annotations

import hashlib
import json
import platform
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallvision.errors import CheckpointError
from smallvision.io import atomic_write_bytes
from smallvision.runfolder import RunFolder

FORMAT = "smallvision-checkpoint"
FORMAT_VERSION = 1


def versions() -> dict[str, str]:
    import torchvision

    from smallvision._version import __version__

    return {"smallvision": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version()}


def _split(blob: bytes, path: Path | str) -> tuple[dict[str, Any], bytes]:
    """safetensors layout: u64 header length, JSON header, raw data."""
    pickled = blob[:1] == b"\x80" or blob[:4] == b"PK\x03\x04"  # a pickle, or torch.save's zip of pickles
    if pickled and blob[8:9] != b"{":  # a safetensors JSON header starts at byte 8
        raise CheckpointError(f"{path}: a pickled PyTorch file, not a smallvision checkpoint; pickled checkpoints "
                              "are refused because loading them can run code")
    if len(blob) < 8:
        raise CheckpointError(f"{path}: not a smallvision checkpoint (file too short: {len(blob)} bytes)")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise CheckpointError(f"{path}: not a smallvision checkpoint, or truncated (header needs {n} bytes)")
    try:
        header = json.loads(blob[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: not a smallvision checkpoint (no safetensors header; pickled "
                              "checkpoints are refused because loading them can run code)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a smallvision checkpoint (bad header)")
    return header, blob[8 + n :]


def checkpoint_bytes(state: dict[str, torch.Tensor], meta: dict[str, Any], extra: dict[str, str] | None = None) -> bytes:
    """`extra`: more string keys in the safetensors metadata, beside the "smallvision" JSON."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    first = save(tensors)
    _, data = _split(first, "<memory>")
    meta = {**meta, "format": FORMAT, "format_version": FORMAT_VERSION,
            "data_sha256": hashlib.sha256(data).hexdigest()}
    return save(tensors, metadata={**(extra or {}), "smallvision": json.dumps(meta)})


def save_checkpoint(path: str | Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    atomic_write_bytes(path, checkpoint_bytes(state, meta))


def write_into_checkpoint(path: str | Path, calibration: dict[str, Any], key: str = "calibration",
                          tensors: dict[str, torch.Tensor] | None = None) -> None:
    """Store a calibration (calibration.summarise's doc), or under another `key` a multi-label
    run's thresholds or an OOD detector's document (with its `tensors`, ``ood.*``), in a
    checkpoint; the model's weights stay byte for byte the same."""
    state, meta = load_checkpoint(path)
    meta = {k: v for k, v in meta.items() if k not in ("format", "format_version", "data_sha256")}
    if tensors is not None:  # they replace any earlier tensors under "<key>."
        state = {**{k: v for k, v in state.items() if not k.startswith(key + ".")}, **tensors}
    save_checkpoint(path, state, {**meta, key: calibration})


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and metadata of a checkpoint file, verified; raises CheckpointError."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder; give a run folder or a .safetensors file") from None
    header, data = _split(blob, path)
    try:
        meta = json.loads(header.get("__metadata__", {}).get("smallvision", ""))
    except (json.JSONDecodeError, AttributeError):
        raise CheckpointError(f"{path}: a safetensors file without smallvision metadata") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a smallvision checkpoint")
    if hashlib.sha256(data).hexdigest() != meta.get("data_sha256"):
        raise CheckpointError(f"{path}: corrupt checkpoint (checksum mismatch: truncated or altered)")
    from safetensors.torch import load

    try:
        state = load(blob)
    except Exception as e:  # safetensors raises its own error type for malformed files
        raise CheckpointError(f"{path}: corrupt checkpoint ({e})") from None
    return state, meta


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or a run folder's best checkpoint (its last one when there is no best)."""
    p = Path(path)
    if p.is_dir():
        for name in (RunFolder.BEST, RunFolder.LAST):
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"{p}: no best.safetensors or last.safetensors in this folder")
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint or run folder")
    return p


def load_model(path: str | Path, device: str | torch.device = "cpu"):  # type: ignore[no-untyped-def]
    """Rebuild the model a checkpoint describes and load its weights. Returns (model, meta)."""
    from smallvision.data.info import DatasetInfo
    from smallvision.models import MODELS, create_model

    ckpt = resolve(path)
    state, meta = load_checkpoint(ckpt)
    name = meta.get("model", "")
    if name not in MODELS:
        raise CheckpointError(f"{ckpt}: model {name!r} is not known to this smallvision version")
    # the checkpoint holds every weight: where they first came from (weights/pretrained) is history
    args = {k: v for k, v in meta.get("model_args", {}).items() if k not in ("weights", "pretrained")}
    model = create_model(name, DatasetInfo.from_dict(meta["dataset"]), **args)
    ood = {k[len("ood."):]: state.pop(k) for k in [k for k in state if k.startswith("ood.")]}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt}: weights do not fit model {name!r}: {str(e).splitlines()[0]}") from None
    if isinstance(meta.get("ood"), dict):  # "none of these": the detector fitted after training (ood.py)
        from smallvision.ood import empty_detector

        model.ood = empty_detector(meta["ood"]["detector"], ood)
    from smallvision.data.augment import tta_views_of

    model.tta = tta_views_of(meta.get("config", {}))  # evaluate/predict as the run was tested
    model.temperature = float(meta.get("calibration", {}).get("temperature", 1.0))  # calibrated probabilities
    return model.to(device).eval(), meta


def load_any(path: str | Path, device: str | torch.device = "cpu", onnx_threads: int = 0) -> tuple[Any, dict[str, Any]]:
    """A run folder, a ``.safetensors`` checkpoint or an exported ``.onnx`` file -> (a callable
    model: (B, C, H, W) float tensor -> logits, its self-description). ONNX runs on the CPU
    through onnxruntime with `onnx_threads` threads (0: all)."""
    if str(path).lower().endswith(".onnx"):
        m = OnnxModel.load(path, onnx_threads)
        return m, m.meta
    return load_model(path, device)


def preprocessing(meta: dict[str, Any]) -> dict[str, Any]:
    """The preprocessing rule in words and numbers, for tools other than smallvision."""
    from smallvision.data.info import DatasetInfo

    info = DatasetInfo.from_dict(meta["dataset"])
    digit = info.is_digit_style() and info.height == info.width
    return {
        "input": "float32 NCHW, (pixel/255 - mean) / std per channel",
        "channels": info.channels, "height": info.height, "width": info.width,
        "mean": list(info.mean), "std": list(info.std),
        "invert": ("auto: invert when the border is light (the model saw light ink on a dark background)"
                   if info.channels == 1 and info.mean[0] < 0.5 else "no"),
        "center": ("mnist: crop to the ink, fit in a 20/28 box, centre by mass" if digit
                   else "resize the short side, centre crop"),
        "class_names": list(info.class_names) or [str(i) for i in range(info.num_classes)],
    }


def model_card(meta: dict[str, Any], ckpt: Path | None = None) -> dict[str, Any]:
    """Name, data set, test accuracy (from the run's summary when the checkpoint is in its run
    folder), parameters: what the served page and `smallvision export` show."""
    from smallvision.data.augment import tta_views_of

    if isinstance(meta.get("card"), dict):  # an exported file: its card was written at export
        return meta["card"]
    summary: dict[str, Any] = {}
    if ckpt is not None and (ckpt.parent / RunFolder.SUMMARY).is_file():
        try:
            summary = json.loads((ckpt.parent / RunFolder.SUMMARY).read_text())
        except (OSError, json.JSONDecodeError):
            summary = {}
    metrics = meta.get("metrics") or {}
    cfg = meta.get("config") or {}
    return {
        "model": meta.get("model"),
        "dataset": cfg.get("dataset") or meta["dataset"].get("name"),
        "recipe": cfg.get("recipe") or summary.get("recipe"),
        "run": summary.get("run") or (ckpt.parent.name if ckpt is not None else None),
        "test_accuracy": summary.get("test_accuracy", metrics.get("test_accuracy")),
        "params": summary.get("params"),
        "epoch": meta.get("epoch"),
        "tta_views": len(tta_views_of(cfg)),
        # the probabilities this model gives: temperature-scaled on its validation split, or raw
        "calibration": (f"temperature {meta['calibration']['temperature']:.3f} fitted on "
                        f"{meta['calibration'].get('val_images', '?')} validation images"
                        if isinstance(meta.get("calibration"), dict) and "temperature" in meta["calibration"]
                        else "none"),
    }


class OnnxModel:
    """An exported .onnx file run by onnxruntime, callable like the PyTorch model it came from:
    (B, C, H, W) float tensor -> logits tensor. `meta` is the self-description stored inside."""

    def __init__(self, session: Any, meta: dict[str, Any]) -> None:
        self.session, self.meta = session, meta
        self.input_name = session.get_inputs()[0].name

    @classmethod
    def from_bytes(cls, blob: bytes, where: str = "<memory>", threads: int = 0) -> OnnxModel:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        try:
            sess = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types for malformed files
            raise CheckpointError(f"{where}: not a readable ONNX model ({str(e).splitlines()[0][:200]})") from None
        raw = sess.get_modelmeta().custom_metadata_map.get("smallvision")
        try:
            meta = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            meta = None
        if not isinstance(meta, dict) or "dataset" not in meta:
            raise CheckpointError(f"{where}: an ONNX model without smallvision metadata (export it with "
                                  "`smallvision export`)")
        return cls(sess, meta)

    @classmethod
    def load(cls, path: str | Path, threads: int = 0) -> OnnxModel:
        """`threads`: onnxruntime's intra-op threads (0: its default, every core)."""
        p = Path(path)
        try:
            blob = p.read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"{p}: no such file") from None
        return cls.from_bytes(blob, str(p), threads)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, OOD scores or None): a graph exported with "none of these" has a second output."""
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x.detach().float().cpu().numpy())})
        return torch.from_numpy(out[0]), torch.from_numpy(out[1]) if len(out) > 1 else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(x.detach().float().cpu().numpy()))

    def eval(self) -> OnnxModel:
        return self
