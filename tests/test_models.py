import pytest
import torch

from smallvision.data.info import DatasetInfo
from smallvision.errors import UsageError
from smallvision.models import count_params, create_model


def info(c=1, h=28, w=28, k=10):
    return DatasetInfo("t", k, c, h, w, (0.5,) * c, (0.25,) * c, tuple(str(i) for i in range(k)))


def test_sizes_come_from_the_input():
    a = create_model("seed-digit-cnn", info(1, 28, 28))
    b = create_model("seed-digit-cnn", info(3, 36, 36))
    first_linear = lambda m: next(x for x in m.modules() if isinstance(x, torch.nn.Linear))  # noqa: E731
    assert first_linear(a).in_features == 2000  # the seed's 20*10*10 on 28×28
    assert first_linear(b).in_features == 20 * 14 * 14


def test_small_input_is_a_clear_error():
    with pytest.raises(UsageError, match="too small"):
        create_model("seed-digit-cnn", info(1, 8, 8))
    assert create_model("cnn-fast", info(1, 8, 8))(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_unknown_model_option_is_a_usage_error():
    with pytest.raises(UsageError, match="depth"):
        create_model("cnn-fast", info(), depth=3)


def test_seed004_init_follows_the_seed():
    torch.manual_seed(0)
    m = create_model("seed-mlp-sigmoid", info())
    w = m.features[1].weight
    assert abs(w.mean().item() - 0.01) < 0.005 and abs(w.std().item() - 0.1) < 0.005
    assert m.features[1].bias.abs().max().item() == 0


def test_smallvision_checkpoint_as_backbone(tmp_path):
    """A trained resnet18's weights seed a new resnet18 for another class count (transfer)."""
    from smallvision.modelfile import save_checkpoint

    src = create_model("resnet18", info(3, 32, 32, k=10))
    save_checkpoint(tmp_path / "b.safetensors", src.state_dict(), {"model": "resnet18"})
    dst = create_model("resnet18", info(3, 32, 32, k=4), weights=str(tmp_path / "b.safetensors"))
    a, b = src.state_dict(), dst.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("features."))
    assert dst.head.out_features == 4
    torch.save(src.features[1].state_dict(), tmp_path / "wrong.pt")
    with pytest.raises(UsageError, match="does not fit"):
        create_model("resnet18", info(3, 32, 32), weights=str(tmp_path / "wrong.pt"))


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 27, 31)])
def test_cnn_fast_patch_stem_never_convolves_at_full_resolution(shape):
    """stem="patch" turns 2×2 pixel patches into channels: the first convolution sees 4× the
    channels at half the size (odd sizes padded); hidden=N ends in an N-unit layer."""
    c, h, w = shape
    model = create_model("cnn-fast", info(c, h, w), widths=[8, 16], stem="patch", hidden=32)
    seen = []
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    model.eval()
    assert model(torch.randn(2, c, h, w)).shape == (2, 10)
    assert seen == [(2, 4 * c, (h + 1) // 2, (w + 1) // 2)]
    assert model.num_features == 32 and model.forward_features(torch.randn(2, c, h, w)).shape == (2, 32)
    # the default is unchanged: full-resolution first block, global max-pool head
    plain = create_model("cnn-fast", info(c, h, w), widths=[8, 16])
    first = next(m for m in plain.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == c and plain.num_features == 16


@pytest.mark.parametrize("opts,msg", [({"stem": "pixels"}, "stem must be"), ({"hidden": -1}, "hidden must be"),
                                      ({"downsample": "none"}, "downsample must be")])
def test_cnn_fast_bad_options(opts, msg):
    with pytest.raises(UsageError, match=msg):
        create_model("cnn-fast", info(), **opts)


def test_resnet_small_pool_first_is_the_same_function_at_inference():
    """Max-pooling commutes with eval-mode BatchNorm (a positive per-channel scale) and ReLU, both
    monotone: conv → pool → BN → ReLU computes what conv → BN → ReLU → pool does, on 4× fewer values."""
    torch.manual_seed(0)
    last = create_model("resnet-small", info(), width=4)
    first = create_model("resnet-small", info(), width=4, pool_first=True)
    assert count_params(first) == count_params(last)
    kinds = (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear)
    a = [m for m in last.modules() if isinstance(m, kinds)]
    b = [m for m in first.modules() if isinstance(m, kinds)]
    assert [type(m) for m in a] == [type(m) for m in b]
    order = [type(m).__name__ for m in first.features[:8]]
    assert order[3:7] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]  # the first downsampling block
    for src, dst in zip(a, b, strict=True):
        dst.load_state_dict(src.state_dict())
        if isinstance(src, torch.nn.BatchNorm2d):  # non-trivial statistics, positive scales
            for m in (src, dst):
                m.running_mean.copy_(torch.linspace(-0.5, 0.5, m.num_features))
                m.running_var.copy_(torch.linspace(0.5, 2.0, m.num_features))
                m.weight.data.copy_(torch.linspace(0.5, 1.5, m.num_features))
    last.eval(), first.eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(first(x), last(x), atol=1e-4)


def test_resnet_small_pool_first_takes_a_boolean():
    with pytest.raises(UsageError, match="pool_first must be true or false, got 'no'"):
        create_model("resnet-small", info(), width=4, pool_first="no")
