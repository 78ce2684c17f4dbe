"""The conformance suite, generated from the registries: every model, data set, optimiser and
schedule (plugins included: a new file is picked up here with no test edit) is checked against
the contract its entry declares (registry.py). The learning checks use the ``stripes`` set
(data/synthetic.py), on which a linear model stays at chance, with a margin a broken optimiser
misses (`test_a_broken_optimiser_fails_the_learning_check` shows that it does)."""

from __future__ import annotations

import pytest
import torch

from smallvision import api
from smallvision.config import TrainConfig
from smallvision.data import DATASETS, load_dataset
from smallvision.data.info import DatasetInfo
from smallvision.errors import UsageError
from smallvision.models import MODELS, count_params, create_model
from smallvision.models.base import DEFAULT_MIN_SIZE
from smallvision.optim import OPTIMIZERS, SCHEDULERS, lr_at

STRIPES = dict(dataset="fake:1x16x16", data_args={"classes": 4, "kind": "stripes", "train": 400, "test": 200})
CHANCE = 25.0


def info(c: int, s: int, k: int) -> DatasetInfo:
    return DatasetInfo("t", k, c, s, s, (0.5,) * c, (0.25,) * c, tuple(str(i) for i in range(k)))


def _shapes(entry) -> list[tuple[int, int]]:  # (channels, side) to build at: its minimum, and MNIST/CIFAR sizes
    lo = entry.contract.min_size
    sizes = [(1, lo), (3, max(lo, 32))] if entry.contract.heavy else [(1, lo), (1, max(lo, 28)), (3, max(lo, 32))]
    return list(dict.fromkeys(sizes))


# the largest: 3-15 CPU-s each, make test-slow (the default photo model, efficientnet-lite0, stays)
HEAVY = ("vgg16", "convnext_tiny", "resnet50", "resnet34", "efficientnet_b0", "efficientnet-lite2")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in MODELS.names()])
def test_model_contract(name):
    entry = MODELS.entry(name)
    for c, s in _shapes(entry):
        model = create_model(name, info(c, s, 7)).eval()
        x = torch.randn(2, c, s, s)
        out = model(x)
        assert out.shape == (2, 7) and model.input_shape == (c, s, s)
        feats = model.forward_features(x)
        assert feats.shape == (2, model.num_features)
        assert torch.allclose(model.forward_head(feats), out, atol=1e-5)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.num_classes == 3
    model.train()
    model(x).sum().backward()
    assert count_params(model) > 0 and all(p.grad is not None for p in model.parameters())
    # every model can be explained: Grad-CAM on its last feature map (occlusion when it has none),
    # one (H, W) map per image, in [0, 1]
    from smallvision.explain import cam_layer, heatmaps

    model.eval()
    maps = heatmaps(model, x)
    assert maps.shape == (2, s, s) and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert cam_layer(model) is not None or not any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    lo = entry.contract.min_size
    if lo > DEFAULT_MIN_SIZE:  # below its declared minimum: a one-line error, not a crash inside a layer
        with pytest.raises(UsageError, match="too small"):
            create_model(name, info(1, lo // 2, 3))


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "multi-mnist" else n  # ~6.5 CPU-s
                                  for n in DATASETS.names()])
def test_data_set_contract_and_its_fixture_learns(name, tmp_path, monkeypatch):
    """The entry's fixture loads as a well-formed set, and a small CNN learns it far above chance."""
    fixture = DATASETS.entry(name).contract.fixture
    assert fixture is not None, f"data set {name!r} declares no fixture"
    monkeypatch.setenv("SMALLVISION_DATA", str(tmp_path / "nowhere"))  # only the fixture's files count
    settings = fixture(tmp_path)
    d = load_dataset(settings["dataset"], settings.get("data_dir"), settings.get("data_args"))
    k = d.info.num_classes
    assert d.train_x.dtype == torch.uint8 and d.train_x.shape[1:] == d.test_x.shape[1:] == d.info.input_shape
    assert len(d.train_x) == len(d.train_y) and len(d.test_x) == len(d.test_y) and k >= 2
    assert len(d.info.class_names) == k and len(d.info.mean) == len(d.info.std) == d.info.channels
    if d.info.multilabel:  # multi-hot float targets, every image with at least one label
        assert d.train_y.dtype == torch.float32 and d.train_y.shape[1] == d.test_y.shape[1] == k
        assert set(d.train_y.unique().tolist()) <= {0.0, 1.0} and bool((d.train_y.sum(1) >= 1).all())
    else:
        assert int(d.train_y.min()) >= 0 and int(max(d.train_y.max(), d.test_y.max())) < k
    r = api.train(runs_dir=tmp_path / "runs", model="cnn-fast", model_args={"widths": [16, 32]}, epochs=6,
                  batch_size=32, optimizer="adam", lr=3e-3, val_size=0, report=False, **settings)
    if d.info.multilabel:  # a model that always answers the most common label set stays far below
        assert r.summary["test_macro_f1"] > 0.7, r.summary
    else:
        assert r.summary["test_accuracy"] > 100 / k + 40, r.summary  # chance is 100/k %


def _learns(runs_dir, optimizer: str, lr: float) -> float:
    r = api.train(runs_dir=runs_dir, model="cnn-fast", model_args={"widths": [8, 16]}, epochs=3, batch_size=32,
                  optimizer=optimizer, lr=lr, val_size=0, report=False, **STRIPES)
    return r.summary["test_accuracy"]


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimiser_learns_the_stripes(name, runs_dir):
    lr = OPTIMIZERS.entry(name).contract.test_lr
    assert _learns(runs_dir, name, lr) >= 95  # every optimiser here: 100 % (seeds 0, 1)


def test_a_broken_optimiser_fails_the_learning_check(runs_dir):
    """The check above can fail: an optimiser that does not move the weights gets what random
    convolutions and a random head give (49.5 % at seed 0, 72.5 % at seed 1; chance 25 %)."""
    @OPTIMIZERS.register("_frozen", test_lr=1.0)
    def _frozen(params, cfg):  # type: ignore[no-untyped-def]
        return torch.optim.SGD(params, lr=0.0)

    try:
        assert _learns(runs_dir, "_frozen", 1.0) < 95
    finally:
        OPTIMIZERS._entries.pop("_frozen")


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_schedule_contract(name):
    """A schedule is a pure function of the step: ``decays`` means the last rate is far below the
    peak, otherwise the rate never changes; ``warms_up`` means it starts below its peak."""
    contract = SCHEDULERS.entry(name).contract
    cfg = TrainConfig(lr=1.0, epochs=10, scheduler=name, step_size=2, milestones=[3, 6], gamma=0.3)
    lrs = [lr_at(cfg, s, 20) for s in range(200)]
    assert lrs == [lr_at(cfg, s, 20) for s in range(200)]  # pure: the same step, the same rate
    assert all(v > 0 for v in lrs[:-1]) and max(lrs) == pytest.approx(1.0, rel=0.06)
    if contract.decays:  # after its peak the rate only falls, to a quarter of the peak or less
        after = lrs[lrs.index(max(lrs)):]
        assert after == sorted(after, reverse=True) and lrs[-1] < 0.25 * max(lrs)
    else:
        assert len(set(lrs)) == 1
    if contract.warms_up:
        assert lrs[0] < 0.5 * max(lrs) and lrs.index(max(lrs)) > 0
