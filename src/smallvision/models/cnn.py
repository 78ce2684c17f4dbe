"""Our own CNNs: classic LeNet-5, the fast `cnn-fast`, and the stronger `resnet-small`."""

from __future__ import annotations

from torch import nn

from smallvision.data.info import DatasetInfo
from smallvision.errors import UsageError
from smallvision.models.base import MODELS, Classifier, flat_size


def conv_bn(cin: int, cout: int, k: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@MODELS.register("lenet5", "LeNet-5 (ReLU, max-pool): conv6 k5, conv16 k5, fc 120-84", min_size=12)
def lenet5(info: DatasetInfo) -> Classifier:
    convs = nn.Sequential(
        nn.Conv2d(info.channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 6, 14, 14) on 28×28
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),  # (B, 400)
    )
    n = flat_size(convs, info.input_shape)
    features = nn.Sequential(*convs, nn.Linear(n, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
    return Classifier(features, nn.Linear(84, info.num_classes), info)


@MODELS.register("cnn-fast", "our fast CNN: conv-pool-BN-ReLU blocks (widths), optional 2×2 patch stem and fully connected hidden layer")
def cnn_fast(info: DatasetInfo, widths: tuple[int, ...] | list[int] = (16, 32, 64), downsample: str = "max",
             stem: str = "conv", hidden: int = 0) -> Classifier:
    """Blocks conv → downsample → BN → ReLU; the last block is max-pooled globally.

    Downsampling right after each convolution makes BatchNorm and ReLU, memory-bound layers that
    cost more than the convolutions on a CPU, work on 4× fewer values. ``downsample``: ``max``
    (2×2 max-pool), ``avg`` (2×2 average pool) or ``stride`` (the convolution itself has stride 2:
    4× fewer convolution FLOPs, no pooling pass).

    ``stem``: ``conv`` (the first block sees the full-resolution image) or ``patch``: each 2×2
    patch of pixels becomes one position with 4× the channels (``PixelUnshuffle``), so no layer
    works at full resolution — the full-resolution first block is where a CPU step spends most
    of its time (half of it for 16-32-64-128 on 28×28: benchmarks/step_profile.py).

    ``hidden``: 0 (the last block's map is max-pooled globally) or N: every block downsamples
    and the last map is flattened into a fully connected layer of N units (BN, ReLU). On a CPU a
    matrix product is cheaper than a 3×3 convolution on a tiny map: with widths 32-64 on 28×28
    the flattened 64×3×3 → 256 layer costs 147 k multiply-adds per image, a 128-wide 3×3
    convolution on the 3×3 map 664 k (and its bf16 backward is slow on a CPU).
    """
    if downsample not in ("max", "avg", "stride"):
        raise UsageError(f"cnn-fast: downsample must be max, avg or stride, got {downsample!r}")
    if stem not in ("conv", "patch"):
        raise UsageError(f"cnn-fast: stem must be conv or patch, got {stem!r}")
    if not isinstance(hidden, int) or hidden < 0:
        raise UsageError(f"cnn-fast: hidden must be an integer ≥ 0, got {hidden!r}")
    layers: list[nn.Module] = []
    c = info.channels
    if stem == "patch":  # (B, C, H, W) -> (B, 4C, H/2, W/2); odd sizes are zero-padded first
        if info.height % 2 or info.width % 2:
            layers.append(nn.ZeroPad2d((0, info.width % 2, 0, info.height % 2)))
        layers.append(nn.PixelUnshuffle(2))
        c *= 4
    for i, w in enumerate(widths):
        last = i == len(widths) - 1 and not hidden
        stride = 2 if downsample == "stride" and not last else 1
        layers.append(nn.Conv2d(c, w, 3, padding=1, stride=stride, bias=False))
        if not last and downsample != "stride":
            layers.append(nn.MaxPool2d(2) if downsample == "max" else nn.AvgPool2d(2))
        layers += [nn.BatchNorm2d(w), nn.ReLU(inplace=True)]  # (B, w, H/2^(i+1), W/2^(i+1)) but the last
        c = w
    if hidden:
        convs = nn.Sequential(*layers, nn.Flatten())
        n = flat_size(convs, info.input_shape)  # widths[-1] × the last map's area
        features = nn.Sequential(*convs, nn.Linear(n, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True))
        return Classifier(features, nn.Linear(hidden, info.num_classes), info)
    features = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten())  # (B, widths[-1])
    return Classifier(features, nn.Linear(c, info.num_classes), info)


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*conv_bn(c, c), *conv_bn(c, c))

    def forward(self, x):  # type: ignore[no-untyped-def]
        return x + self.body(x)


@MODELS.register("resnet-small", "a ResNet-9-style net for 28-32 px inputs (best accuracy; width option)", min_size=8)
def resnet_small(info: DatasetInfo, width: int = 32, pool_first: bool = False) -> Classifier:
    """conv → BN → ReLU → max-pool where it downsamples (ResNet-9's order), or with ``pool_first``
    conv → max-pool → BN → ReLU, as in `cnn-fast`: BatchNorm and ReLU then work on 4× fewer values.
    With width 16 on 28×28, bf16 + channels_last, 2 cores: 42.5 → 31.3 ms per step of 128 images
    (a scratch timing of 30 steps, medians)."""
    if not isinstance(pool_first, bool):
        raise UsageError(f"resnet-small: pool_first must be true or false, got {pool_first!r}")
    w = width

    def down(cin: int, cout: int) -> list[nn.Module]:
        if pool_first:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        return [*conv_bn(cin, cout), nn.MaxPool2d(2)]

    features = nn.Sequential(
        *conv_bn(info.channels, w),  # (B, w, H, W)
        *down(w, 2 * w), Residual(2 * w),  # (B, 2w, H/2, W/2)
        *down(2 * w, 4 * w),  # (B, 4w, H/4, W/4)
        *down(4 * w, 8 * w), Residual(8 * w),  # (B, 8w, H/8, W/8)
        nn.AdaptiveMaxPool2d(1), nn.Flatten(),  # (B, 8w)
    )
    return Classifier(features, nn.Linear(8 * w, info.num_classes), info)


__all__ = ["cnn_fast", "flat_size", "lenet5", "resnet_small"]
