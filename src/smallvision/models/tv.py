"""torchvision models for transfer learning, under our classifier contract.

``pretrained=true`` loads torchvision's ImageNet weights (downloaded once into torch's cache;
offline that fails with a clear error); ``weights=PATH`` loads a local state dict (.safetensors,
or a .pt/.pth read with ``torch.load(weights_only=True)``), including a smallvision checkpoint
of the same architecture used as a backbone. The classifier layer is replaced for the data
set's classes; grayscale inputs are repeated to three channels.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from smallvision.data.info import DatasetInfo
from smallvision.errors import CheckpointError, UsageError
from smallvision.models.base import MODELS, TORCHVISION_LAYOUT, Classifier, flat_size

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class GrayToRGB(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors (a smallvision checkpoint or plain) or a weights-only torch file."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--model-arg weights={path}: no such file")
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
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p}: expected a state dict, found {type(obj).__name__}")
    return obj


def _tv_entry(name: str, build: Callable[..., nn.Module], weights_enum: str,
              split: Callable[[nn.Module], tuple[nn.Module, int]]) -> Callable[..., Classifier]:
    def entry(info: DatasetInfo, pretrained: bool = False, weights: str | None = None) -> Classifier:
        import torchvision.models as tvm

        net = build(weights=None)
        if pretrained:
            try:
                state = getattr(tvm, weights_enum).DEFAULT.get_state_dict(progress=False)
            except Exception as e:  # URLError, timeouts, ...: all mean "cannot download here"
                raise UsageError(
                    f"{name}: cannot download torchvision's pretrained weights ({type(e).__name__}); offline, save "
                    f"them elsewhere with torchvision and pass --model-arg weights=PATH") from None
            net.load_state_dict(state)
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


def _register() -> None:
    import torchvision.models as tvm

    for name, build, enum, split, desc, min_size in [
        ("resnet18", tvm.resnet18, "ResNet18_Weights", _resnet, "torchvision ResNet-18 (11.7 M params); pretrained=true", 4),
        ("vgg16", tvm.vgg16, "VGG16_Weights", _last_linear, "torchvision VGG-16 (138 M params); pretrained=true", 32),
        ("mobilenet_v3_small", tvm.mobilenet_v3_small, "MobileNet_V3_Small_Weights", _last_linear,
         "torchvision MobileNetV3-Small (2.5 M params); pretrained=true", 4),
        ("efficientnet_b0", tvm.efficientnet_b0, "EfficientNet_B0_Weights", _last_linear,
         "torchvision EfficientNet-B0 (5.3 M params); pretrained=true", 4),
    ]:  # five 2× poolings: VGG's flatten needs 32 px; the others pool adaptively
        MODELS.register(name, desc, min_size=min_size, heavy=name != "mobilenet_v3_small")(_tv_entry(name, build, enum, split))
        TORCHVISION_LAYOUT.add(name)


_register()
