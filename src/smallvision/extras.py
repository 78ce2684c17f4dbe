"""The optional extras: which command needs which package, and the one line a missing one gets.

The core install (``pip install smallvision``) trains, evaluates and predicts. Serving, tuning,
explaining, label cleaning, ONNX export, other runtimes, TensorBoard logs and the
efficientnet-lite backbones (timm) are extras
(pyproject.toml's ``[project.optional-dependencies]``), imported only inside what needs them. When
one is missing, `missing_extra` turns the ModuleNotFoundError into a one-line `UsageError` naming
the extra; the CLI applies it to every command in one place (`cli.main.main`).
"""

from __future__ import annotations

import importlib.util

from smallvision.errors import UsageError

# the importable name of each extra's packages -> the extra that installs it
PACKAGES = {
    "fastapi": "serve", "fastapi_offline": "serve", "uvicorn": "serve", "multipart": "serve",
    "python_multipart": "serve", "starlette": "serve",
    "optuna": "tune",
    "captum": "explain",
    "cleanlab": "labels",
    "onnx": "export", "onnxruntime": "export", "onnxscript": "export",
    "openvino": "runtimes",
    "tensorboard": "tensorboard",
    "timm": "pretrained",
    "litert_torch": "phone", "ai_edge_litert": "phone", "executorch": "phone",
}


def installed(package: str) -> bool:
    """Whether `package` (an importable name) is there, without importing it."""
    return importlib.util.find_spec(package) is not None


def missing_extra(error: ModuleNotFoundError, command: str) -> UsageError | None:
    """The one-line error for `command` when `error` is an extra's package not installed, else None."""
    extra = PACKAGES.get((error.name or "").split(".")[0])
    if extra is None:
        return None
    return UsageError(f"{command} needs the '{extra}' extra: pip install 'smallvision[{extra}]'")
