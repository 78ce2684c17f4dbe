"""torchvision models for transfer learning, under our classifier contract.

``pretrained=true`` loads torchvision's ImageNet weights (downloaded once into torch's cache;
offline that fails with a clear error); ``weights=PATH`` loads a local state dict (.safetensors,
or a .pt/.pth read with ``torch.load(weights_only=True)``), including a smallvision checkpoint
of the same architecture used as a backbone. The classifier layer is replaced for the data
set's classes; grayscale inputs are repeated to three channels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from smallvision.data.info import DatasetInfo
from smallvision.errors import CheckpointError
from smallvision.models.base import MODELS, Classifier, flat_size
from smallvision.models.pretrained import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    imagenet_state,
    load_state,
    register_backbone,
)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "GrayToRGB", "load_state"]



class GrayToRGB(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _tv_entry(name: str, build: Callable[..., nn.Module],
              split: Callable[[nn.Module], tuple[nn.Module, int]]) -> Callable[..., Classifier]:
    def entry(info: DatasetInfo, pretrained: bool = False, weights: str | None = None) -> Classifier:
        net = build(weights=None)
        if pretrained and not weights:  # a given file wins over the download
            net.load_state_dict(imagenet_state(name))
        features, width = split(net)
        flat_size(features, info.input_shape[:0] + (3,) + info.input_shape[1:])  # too-small inputs: a clear error
        model = Classifier(nn.Sequential(GrayToRGB(), features), nn.Linear(width, info.num_classes), info)
        if weights:
            state = load_state(weights)
            if any(k.startswith("features.1.") for k in state):  # a smallvision checkpoint of this model
                backbone = {k[len("features.1."):]: v for k, v in state.items() if k.startswith("features.1.")}
            else:  # torchvision's own layout: build the net, then take its feature part
                tmp = build(weights=None)
                try:
                    tmp.load_state_dict(state)
                except RuntimeError as e:
                    raise CheckpointError(f"{weights}: does not fit {name}: {str(e).splitlines()[0]}") from None
                backbone = split(tmp)[0].state_dict()
            try:
                model.features[1].load_state_dict(backbone)
            except RuntimeError as e:
                raise CheckpointError(f"{weights}: does not fit {name}: {str(e).splitlines()[0]}") from None
        return model

    return entry


def _resnet(net: nn.Module) -> tuple[nn.Module, int]:
    width = net.fc.in_features
    return nn.Sequential(*[m for n, m in net.named_children() if n != "fc"], nn.Flatten()), width


def _last_linear(net: nn.Module) -> tuple[nn.Module, int]:
    """features + avgpool + classifier without its last Linear (vgg, mobilenet, efficientnet)."""
    cls = list(net.classifier.children())
    width = cls[-1].in_features
    return nn.Sequential(net.features, net.avgpool, nn.Flatten(), *cls[:-1]), width


def _convnext(net: nn.Module) -> tuple[nn.Module, int]:
    """features + avgpool + the classifier's LayerNorm and Flatten (convnext)."""
    cls = list(net.classifier.children())
    return nn.Sequential(net.features, net.avgpool, *cls[:-1]), cls[-1].in_features


# torchvision's published ImageNet files: its weight enums' DEFAULT entries (all 224 px crops with
# ImageNet's statistics). Written out rather than read from torchvision.models at import time: that
# import costs ~3 s, paid by every `smallvision` command; tests/test_registry.py holds this table
# against torchvision's own enums.
TORCHVISION = [  # name, published file, feature split, parameters, smallest input side
    ("resnet18", "resnet18-f37072fd.pth", _resnet, "11.7 M", 4),
    ("resnet34", "resnet34-b627a593.pth", _resnet, "21.8 M", 4),
    ("resnet50", "resnet50-11ad3fa6.pth", _resnet, "25.6 M", 4),
    ("vgg16", "vgg16-397923af.pth", _last_linear, "138 M", 32),  # five 2× poolings: VGG's flatten needs 32 px
    ("mobilenet_v3_small", "mobilenet_v3_small-047dcff4.pth", _last_linear, "2.5 M", 4),
    ("mobilenet_v3_large", "mobilenet_v3_large-5c1a4163.pth", _last_linear, "5.5 M", 4),
    ("efficientnet_b0", "efficientnet_b0_rwightman-7f5810bc.pth", _last_linear, "5.3 M", 4),
    ("convnext_tiny", "convnext_tiny-983f1562.pth", _convnext, "28.6 M", 32),
]


def _builder(name: str) -> Callable[..., nn.Module]:
    """torchvision.models.<name>, imported when a model is built."""
    def build(weights: object = None) -> nn.Module:
        import torchvision.models as tvm

        return getattr(tvm, name)(weights=weights)

    return build


def _register() -> None:
    for name, filename, split, params, min_size in TORCHVISION:
        register_backbone(Backbone(name, 224, IMAGENET_MEAN, IMAGENET_STD,
                                   "the pooled (pre-logit) vector; the ImageNet classifier is replaced",
                                   url=f"https://download.pytorch.org/models/{filename}", filename=filename))
        desc = f"torchvision {name} ({params} params); pretrained=true: ImageNet weights (download, or weights=PATH)"
        MODELS.register(name, desc, min_size=min_size, heavy=name not in ("mobilenet_v3_small",),
                        pretrained=True)(_tv_entry(name, _builder(name), split))


_register()
