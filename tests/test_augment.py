"""Augmentation presets: seeded, shape-preserving, and each doing what its name says."""

import pytest
import torch

from smallvision import api
from smallvision.data.augment import AUGMENTATIONS, RandomAffine
from smallvision.errors import UsageError


def ramp(b=6, c=1, h=16, w=16):
    """Each row runs from -1 (left) to 1 (right): asymmetric, so mirrors and zooms are visible."""
    return torch.linspace(-1, 1, w).expand(b, c, h, w).clone()


@pytest.mark.parametrize("name", [n for n in AUGMENTATIONS.names() if n != "none"])
def test_presets_keep_shape_dtype_layout_and_are_seeded(name):
    aug = AUGMENTATIONS.get(name)
    x = torch.randn(5, 3, 20, 20).contiguous(memory_format=torch.channels_last)
    a = aug(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == x.dtype and a.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a, aug(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(2)))
    assert not torch.equal(a, x)


def test_flip_mirrors_about_half_of_the_images_and_nothing_else():
    x = ramp(b=200)
    out = AUGMENTATIONS.get("flip")(x, torch.Generator().manual_seed(0))
    same = (out - x).abs().amax((1, 2, 3)) < 1e-5
    mirrored = (out - x.flip(-1)).abs().amax((1, 2, 3)) < 1e-5
    assert bool((same | mirrored).all()) and 60 < int(mirrored.sum()) < 140


def test_crop_zooms_in_and_digits_never_mirror():
    x = ramp(b=50, h=32, w=32)
    zoom2 = RandomAffine(area=(0.25, 0.25))(x, torch.Generator().manual_seed(0))  # half the width, stretched
    span = zoom2.amax((1, 2, 3)) - zoom2.amin((1, 2, 3))
    assert torch.allclose(span, torch.full_like(span, 1.0), atol=0.1)  # the ramp's span 2 halves
    digits = AUGMENTATIONS.get("digits")(x, torch.Generator().manual_seed(0))
    slope = digits[..., -4:].mean((1, 2, 3)) - digits[..., :4].mean((1, 2, 3))
    assert bool((slope > 0).all())  # rotated ±10° and zoomed, but left stays left


def test_unknown_preset_is_a_usage_error_with_a_close_match(runs_dir):
    with pytest.raises(UsageError, match="did you mean digits"):
        api.make_config(augment="digit")


def test_training_with_a_preset_learns(runs_dir):
    r = api.train(runs_dir=runs_dir, dataset="fake:1x12x12,classes=4,train=400,test=100", model="cnn-fast",
                  model_args={"widths": [8, 16]}, epochs=3, batch_size=32, lr=0.05, optimizer="sgd", momentum=0.9,
                  val_size=80, augment="digits", report=False)
    assert r.summary["test_accuracy"] > 60  # chance is 25 %


def test_erase_blanks_one_box_in_about_half_the_images():
    x = torch.ones(400, 2, 20, 20)
    out = AUGMENTATIONS.get("erase")(x, torch.Generator().manual_seed(0))
    blank = (out == 0).float().mean((1, 2, 3))  # fraction of each image erased (both channels alike)
    erased = blank > 0
    assert 140 < int(erased.sum()) < 260
    assert float(blank.max()) <= 0.4  # at most a third of the area, plus the rounding to whole pixels
    assert torch.equal(out[~erased], x[~erased])
    assert torch.equal(out[:, 0] == 0, out[:, 1] == 0)
