"""`photo-net`: a small CNN for 64-128 px photos that is quick on a CPU.

A stride-2 3×3 stem (nothing else runs at full resolution), then conv-BN-ReLU blocks each ending
in a 2×2 max-pool, global average pooling and a linear head. Sizes come from `DatasetInfo`.
"""

from __future__ import annotations

from torch import nn

from smallvision.data.info import DatasetInfo
from smallvision.models.base import MODELS, Classifier


@MODELS.register("photo-net", "small CPU-fast CNN for 64-128 px photos: stride-2 stem, conv-BN-ReLU-pool blocks "
                 "(widths), global average pool", min_size=16)
def photo_net(info: DatasetInfo, widths: list[int] | tuple[int, ...] = (32, 64, 128, 256), stem: int = 24) -> Classifier:
    layers: list[nn.Module] = [nn.Conv2d(info.channels, stem, 3, stride=2, padding=1, bias=False),
                               nn.BatchNorm2d(stem), nn.ReLU(inplace=True)]  # (B, stem, H/2, W/2)
    c = stem
    for w in widths:
        layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2, ceil_mode=True)]
        c = w
    features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, widths[-1])
    return Classifier(features, nn.Linear(c, info.num_classes), info)
