"""Our own CNNs: classic LeNet-5, the fast `cnn-fast`, and the stronger `resnet-small`."""

from __future__ import annotations

from torch import nn

from smallvision.data.info import DatasetInfo
from smallvision.errors import UsageError
from smallvision.models.base import MODELS, Classifier, flat_size


def conv_bn(cin: int, cout: int, k: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@MODELS.register("lenet5", "LeNet-5 (ReLU, max-pool): conv6 k5, conv16 k5, fc 120-84")
def lenet5(info: DatasetInfo) -> Classifier:
    convs = nn.Sequential(
        nn.Conv2d(info.channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 6, 14, 14) on 28×28
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),  # (B, 400)
    )
    n = flat_size(convs, info.input_shape)
    features = nn.Sequential(*convs, nn.Linear(n, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
    return Classifier(features, nn.Linear(84, info.num_classes), info)


@MODELS.register("cnn-fast", "our fast CNN: 3 conv-BN-ReLU blocks, 2× downsampling, global max-pool (≈1-2 MFLOP on 28×28)")
def cnn_fast(info: DatasetInfo, widths: tuple[int, ...] | list[int] = (16, 32, 64), downsample: str = "max"
             ) -> Classifier:
    """Blocks conv → downsample → BN → ReLU; the last block is max-pooled globally.

    Downsampling right after each convolution makes BatchNorm and ReLU, memory-bound layers that
    cost more than the convolutions on a CPU, work on 4× fewer values. ``downsample``: ``max``
    (2×2 max-pool), ``avg`` (2×2 average pool) or ``stride`` (the convolution itself has stride 2:
    4× fewer convolution FLOPs, no pooling pass).
    """
    if downsample not in ("max", "avg", "stride"):
        raise UsageError(f"cnn-fast: downsample must be max, avg or stride, got {downsample!r}")
    layers: list[nn.Module] = []
    c = info.channels
    for i, w in enumerate(widths):
        last = i == len(widths) - 1
        stride = 2 if downsample == "stride" and not last else 1
        layers.append(nn.Conv2d(c, w, 3, padding=1, stride=stride, bias=False))
        if not last and downsample != "stride":
            layers.append(nn.MaxPool2d(2) if downsample == "max" else nn.AvgPool2d(2))
        layers += [nn.BatchNorm2d(w), nn.ReLU(inplace=True)]  # (B, w, H/2^(i+1), W/2^(i+1)) but the last
        c = w
    features = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten())  # (B, widths[-1])
    return Classifier(features, nn.Linear(c, info.num_classes), info)


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*conv_bn(c, c), *conv_bn(c, c))

    def forward(self, x):  # type: ignore[no-untyped-def]
        return x + self.body(x)


@MODELS.register("resnet-small", "a ResNet-9-style net for 28-32 px inputs (best accuracy; width option)")
def resnet_small(info: DatasetInfo, width: int = 32) -> Classifier:
    w = width
    features = nn.Sequential(
        *conv_bn(info.channels, w),  # (B, w, H, W)
        *conv_bn(w, 2 * w), nn.MaxPool2d(2), Residual(2 * w),  # (B, 2w, H/2, W/2)
        *conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),  # (B, 4w, H/4, W/4)
        *conv_bn(4 * w, 8 * w), nn.MaxPool2d(2), Residual(8 * w),  # (B, 8w, H/8, W/8)
        nn.AdaptiveMaxPool2d(1), nn.Flatten(),  # (B, 8w)
    )
    return Classifier(features, nn.Linear(8 * w, info.num_classes), info)


__all__ = ["cnn_fast", "flat_size", "lenet5", "resnet_small"]
