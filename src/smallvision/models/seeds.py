"""Every architecture of the seed tutorials, under a clear name, sizes derived from the input.

Differences from the seeds are deliberate and minimal: models return logits (the seeds'
``log_softmax`` + NLL is the same loss as cross-entropy on logits), and input sizes are
measured rather than hard-coded (seed 000's ``20*10*10`` only fits 28×28).
"""

from __future__ import annotations

import math

from torch import nn

from smallvision.data.info import DatasetInfo
from smallvision.models.base import MODELS, Classifier, flat_size


def _mlp(info: DatasetInfo, widths: list[int], act: type[nn.Module] | None, batchnorm: bool) -> Classifier:
    layers: list[nn.Module] = [nn.Flatten()]
    d = math.prod(info.input_shape)
    for w in widths:
        layers.append(nn.Linear(d, w))
        if batchnorm:
            layers.append(nn.BatchNorm1d(w))
        if act is not None:
            layers.append(act())
        d = w
    return Classifier(nn.Sequential(*layers), nn.Linear(d, info.num_classes), info)


@MODELS.register("seed-digit-cnn", "seed 000 'Digit': conv10 k5, pool, conv20 k3, fc500, ReLU", min_size=10)
def seed_digit_cnn(info: DatasetInfo) -> Classifier:
    convs = nn.Sequential(
        nn.Conv2d(info.channels, 10, 5), nn.ReLU(), nn.MaxPool2d(2),  # (B, 10, 12, 12) on 28×28
        nn.Conv2d(10, 20, 3), nn.ReLU(), nn.Flatten(),  # (B, 2000)
    )
    n = flat_size(convs, info.input_shape)
    features = nn.Sequential(*convs, nn.Linear(n, 500), nn.ReLU())
    return Classifier(features, nn.Linear(500, info.num_classes), info)


@MODELS.register("seed-mlp-30x30", "seed 001: MLP D-30-30-K with ReLU")
def seed_mlp_30x30(info: DatasetInfo) -> Classifier:
    return _mlp(info, [30, 30], nn.ReLU, batchnorm=False)


@MODELS.register("seed-mlp-plain", "seed 002 simpleNet: MLP D-300-100-K, no activation (a linear model)")
def seed_mlp_plain(info: DatasetInfo) -> Classifier:
    return _mlp(info, [300, 100], None, batchnorm=False)


@MODELS.register("seed-mlp-relu", "seed 002 Activation_Net: MLP D-300-100-K with ReLU")
def seed_mlp_relu(info: DatasetInfo) -> Classifier:
    return _mlp(info, [300, 100], nn.ReLU, batchnorm=False)


@MODELS.register("seed-mlp-batchnorm", "seed 002 Batch_Net: MLP D-300-100-K, BatchNorm1d before ReLU")
def seed_mlp_batchnorm(info: DatasetInfo) -> Classifier:
    return _mlp(info, [300, 100], nn.ReLU, batchnorm=True)


@MODELS.register("seed-simple-cnn", "seed 002 SimpleCNN: 3 conv blocks 32/64/128 (k3, pool), fc 512-64", min_size=8)
def seed_simple_cnn(info: DatasetInfo) -> Classifier:
    blocks: list[nn.Module] = []
    c = info.channels
    for w in (32, 64, 128):
        blocks += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c = w
    convs = nn.Sequential(*blocks, nn.Flatten())  # (B, 2048) on 32×32
    n = flat_size(convs, info.input_shape)
    features = nn.Sequential(*convs, nn.Linear(n, 512), nn.ReLU(), nn.Linear(512, 64), nn.ReLU())
    return Classifier(features, nn.Linear(64, info.num_classes), info)


@MODELS.register("seed-fashion-cnn", "seed 003: input BatchNorm, conv8 k3, pool, conv16 k3, pool, fc128, bias-free output",
                 min_size=10)
def seed_fashion_cnn(info: DatasetInfo) -> Classifier:
    convs = nn.Sequential(
        nn.BatchNorm2d(info.channels),
        nn.Conv2d(info.channels, 8, 3), nn.ReLU(), nn.MaxPool2d(2),  # (B, 8, 13, 13)
        nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, 5, 5)
        nn.Flatten(), nn.ReLU(),  # (B, 400); the seed's extra ReLU is kept (a no-op after pooling ReLUs)
    )
    n = flat_size(convs, info.input_shape)
    features = nn.Sequential(*convs, nn.Linear(n, 128), nn.ReLU())
    return Classifier(features, nn.Linear(128, info.num_classes, bias=False), info)


def _seed004_init(model: Classifier, mean: float, std: float) -> Classifier:
    for m in model.modules():
        if isinstance(m, nn.Linear):  # seed 004: weights N(0.01, 0.1), biases 0
            nn.init.normal_(m.weight, mean, std)
            nn.init.zeros_(m.bias)
    return model


@MODELS.register("seed-mlp-sigmoid", "seed 004: MLP D-100-30-K with sigmoid, weights N(0.01, 0.1)")
def seed_mlp_sigmoid(info: DatasetInfo, init_mean: float = 0.01, init_std: float = 0.1) -> Classifier:
    return _seed004_init(_mlp(info, [100, 30], nn.Sigmoid, batchnorm=False), init_mean, init_std)


@MODELS.register("seed-mlp-sigmoid-bn", "seed 004 improved: sigmoid MLP D-100-30-K with BatchNorm1d")
def seed_mlp_sigmoid_bn(info: DatasetInfo, init_mean: float = 0.01, init_std: float = 0.1) -> Classifier:
    return _seed004_init(_mlp(info, [100, 30], nn.Sigmoid, batchnorm=True), init_mean, init_std)
