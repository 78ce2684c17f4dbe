"""The one contract every smallvision classifier follows (timm's shape).

A classifier is ``features`` (input -> pre-logit vector, (B, F)) followed by ``head``
(a final ``nn.Linear``, (B, F) -> (B, K)). It returns logits. Sizes come from the data set's
`DatasetInfo`, never from a hard-coded input size: flat sizes are measured by a dry forward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from smallvision.data.info import DatasetInfo
from smallvision.errors import UsageError
from smallvision.registry import Contract, Registry

View = tuple[int, int, bool]  # a test-time view of an image: shift down dy, right dx (pixels), then mirror?
MIRROR_VIEWS: tuple[View, ...] = ((0, 0, False), (0, 0, True))


def shifted_view(x: torch.Tensor, dy: int, dx: int, mirror: bool) -> torch.Tensor:
    """(B, C, H, W) shifted by (dy, dx) pixels, repeating the border pixels as training shifts do,
    then mirrored left-right when `mirror`."""
    if dy or dx:
        p, (h, w) = max(abs(dy), abs(dx)), x.shape[-2:]
        x = F.pad(x, (p, p, p, p), mode="replicate")[..., p - dy : p - dy + h, p - dx : p - dx + w]
    return x.flip(-1) if mirror else x


class Classifier(nn.Module):
    def __init__(self, features: nn.Module, head: nn.Linear, info: DatasetInfo) -> None:
        super().__init__()
        self.features = features
        self.head = head
        # Default preprocessing, so export/serve/predict need nothing but the model.
        self.input_shape = info.input_shape
        self.mean, self.std = info.mean, info.std
        # Test-time augmentation: in eval mode, average the logits over these views of each image,
        # (dy, dx, mirror) each; set from the run's config by the trainer and by load_model
        # (data.augment.tta_views: the views its training augmentation showed the model).
        self.tta_views: tuple[View, ...] = ()
        # Temperature scaling (calibration.py): in eval mode the logits are divided by it, so every
        # probability after training (evaluate, predict, serve, an exported graph) is the calibrated
        # one; set from the checkpoint's meta["calibration"] by load_model. 1: uncalibrated.
        self.temperature: float = 1.0

    @property
    def tta(self) -> bool:
        return bool(self.tta_views)

    @tta.setter
    def tta(self, views: bool | tuple[View, ...]) -> None:
        """True: the image and its mirror; False: off; a tuple: those views."""
        self.tta_views = MIRROR_VIEWS if views is True else tuple(views or ())

    @property
    def num_features(self) -> int:
        return self.head.in_features

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, F)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(f)  # (B, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.forward_head(self.forward_features(x))
        if self.tta_views:  # one pass per view: memory stays that of one batch
            logits = sum(self.forward_head(self.forward_features(shifted_view(x, *v))) for v in self.tta_views)
            logits = logits / len(self.tta_views)  # type: ignore[operator]
        else:
            logits = self.forward_head(self.forward_features(x))
        return logits / self.temperature if self.temperature != 1.0 else logits

    def reset_classifier(self, num_classes: int, bias: bool = True) -> None:
        self.head = nn.Linear(self.num_features, num_classes, bias=bias)


def split_features(model: nn.Module, top_stages: int) -> tuple[nn.Module, nn.Module]:
    """(bottom, top) of a backbone built of stages (timm's EfficientNet family: ``conv_stem``,
    ``blocks``, ``conv_head``): top(bottom(x)) is ``model.features(x)`` (in eval mode), and top
    holds the last `top_stages` stages, the 1×1 head convolution and the pooling. Both share the
    model's own modules (training top trains the model). Other models: a one-line error."""
    feats = getattr(model, "features", None)
    net = feats[-1] if isinstance(feats, nn.Sequential) and len(feats) else feats
    if not all(hasattr(net, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "global_pool")):
        raise UsageError("--top-stages needs a backbone made of stages (efficientnet-lite0/1/2)")
    n = len(net.blocks)
    if not 1 <= top_stages <= n:
        raise UsageError(f"--top-stages must be 1-{n} for this backbone, got {top_stages}")
    pre = list(feats)[:-1] if isinstance(feats, nn.Sequential) else []
    bottom = nn.Sequential(*pre, net.conv_stem, net.bn1, *net.blocks[: n - top_stages])
    top = nn.Sequential(*net.blocks[n - top_stages:], net.conv_head, net.bn2, net.global_pool)
    return bottom, top


def flat_size(features: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Width of `features`' output for one input of `input_shape`, by a dry forward on zeros."""
    training = features.training
    features.eval()
    try:
        with torch.no_grad():
            n = features(torch.zeros(1, *input_shape)).flatten(1).shape[1]
    except RuntimeError as e:  # a kernel or pool bigger than what is left of the image
        raise UsageError(f"input {'×'.join(map(str, input_shape))} is too small for this model "
                         f"({str(e).splitlines()[0]})") from None
    features.train(training)
    return n


ModelFn = Callable[..., Classifier]
DEFAULT_MIN_SIZE = 4  # the smallest input side of a model that declares none (what the conformance suite builds)


@dataclass(frozen=True)
class ModelContract(Contract):
    min_size: int = DEFAULT_MIN_SIZE  # smallest input side (below it: a one-line "too small" error)
    heavy: bool = False  # slow on a CPU: the conformance suite builds the smallest sizes only
    pretrained: bool = False  # has published ImageNet weights (models/pretrained.py says where); its entry
    # reads weights=PATH itself (its publisher's layout, or a smallvision checkpoint)


MODELS: Registry[ModelFn] = Registry("model", contract=ModelContract)


def create_model(name: str, info: DatasetInfo, **kwargs: Any) -> Classifier:
    """Build a registered model for a data set. ``kwargs`` are the entry's own options (widths, ...)."""
    entry = MODELS.entry(name)
    fn = entry.fn
    lo = entry.contract.min_size
    if min(info.height, info.width) < lo:  # the entry's declared minimum, before a layer fails deep inside
        raise UsageError(f"input {'×'.join(map(str, info.input_shape))} is too small for this model "
                         f"({name} needs at least {lo}×{lo} pixels)")
    weights = kwargs.pop("weights", None)
    if weights and entry.contract.pretrained:  # the entry reads its publisher's layout (or ours) itself
        kwargs["weights"] = weights
        weights = None
    try:
        model = fn(info, **kwargs)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            raise UsageError(f"model {name!r}: {str(e).split(') ', 1)[-1]}") from None
        raise
    if weights:
        load_backbone(model, weights, name)
    return model


def load_backbone(model: Classifier, path: str, name: str) -> None:
    """Initialise `model.features` from a smallvision checkpoint of the same architecture (its
    head is left new: transfer to another class count)."""
    from smallvision.errors import CheckpointError
    from smallvision.models.pretrained import load_state

    state = load_state(path)
    feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    if not feats:
        raise CheckpointError(f"{path}: no 'features.*' weights; not a smallvision checkpoint of {name!r}")
    own = model.features.state_dict()
    for k, v in feats.items():  # grayscale <-> RGB input convolution, as timm's adapt_input_conv
        w = own.get(k)
        if w is not None and v.dim() == 4 and w.shape != v.shape and v.shape[0] == w.shape[0]:
            if v.shape[1] == 1 and w.shape[1] == 3:
                feats[k] = v.repeat(1, 3, 1, 1) / 3
            elif v.shape[1] == 3 and w.shape[1] == 1:
                feats[k] = v.sum(1, keepdim=True)
    try:
        model.features.load_state_dict(feats)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: does not fit {name!r}: {str(e).splitlines()[0]}") from None


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
