import os
import pkgutil
from pathlib import Path

import pytest

import smallvision
from smallvision.errors import UsageError
from smallvision.registry import Registry


def test_register_get_names_and_duplicates():
    reg: Registry = Registry("thing")

    @reg.register("alpha", "first")
    def alpha():
        return 1

    assert reg.get("alpha") is alpha and reg.names() == ["alpha"] and "alpha" in reg
    assert reg.entry("alpha").description == "first"
    with pytest.raises(ValueError, match="duplicate"):
        reg.register("alpha")(alpha)


def test_unknown_name_suggests_close_matches():
    from smallvision.models import MODELS

    with pytest.raises(UsageError, match="did you mean.*cnn-fast"):
        MODELS.get("cnn-fats")
    with pytest.raises(UsageError, match="known:"):
        MODELS.get("zzzzzz")


def test_every_module_of_a_plugin_package_is_imported():
    """Discovery, not an import list: each package imports every module file it holds, so an entry
    in a new file registers with no other edit (the conformance suite then checks it)."""
    from pathlib import Path

    import smallvision.data
    import smallvision.generative.losses
    import smallvision.models
    import smallvision.optim

    for pkg in (smallvision.models, smallvision.data, smallvision.optim, smallvision.generative.losses):
        files = sorted(p.stem for p in Path(pkg.__path__[0]).glob("*.py") if not p.stem.startswith("_"))
        assert pkg.MODULES == files, pkg.__name__


@pytest.mark.slow  # ~9 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_a_new_file_registers_with_no_other_edit(tmp_path):
    """A model and a data set written as new files into a copy of the package are listed and train;
    a GAN loss in a new file is a --loss value with no other edit."""
    import shutil
    import subprocess
    import sys

    pkg = tmp_path / "smallvision"
    shutil.copytree(Path(smallvision.__path__[0]), pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "models" / "tiny.py").write_text(
        "from torch import nn\nfrom smallvision.models.base import MODELS, Classifier\n\n"
        "@MODELS.register('tiny-linear', 'a linear model', min_size=1)\n"
        "def tiny(info):\n    return Classifier(nn.Flatten(), nn.Linear(info.channels * info.height * info.width,"
        " info.num_classes), info)\n")
    (pkg / "data" / "ones.py").write_text(
        "import numpy as np\nfrom smallvision.data.datasets import DATASETS, make_data\n\n"
        "@DATASETS.register('halves', 'left or right half lit', fixture=lambda tmp: {'dataset': 'halves'})\n"
        "def halves(arg, data_dir):\n    x = np.zeros((40, 1, 4, 4), np.uint8)\n    y = np.arange(40) % 2\n"
        "    x[y == 0, :, :, :2] = 255\n    x[y == 1, :, :, 2:] = 255\n"
        "    return make_data('halves', (x, y), (x[:10], y[:10]), ['left', 'right'], 'synthetic')\n")
    (pkg / "generative" / "losses" / "squared.py").write_text(
        "from smallvision.generative.losses.base import GAN_LOSSES\n\n"
        "@GAN_LOSSES.register('squared-hinge', 'hinge, squared')\n"
        "def sq(d_real, d_fake, for_generator):\n    if for_generator:\n        return -d_fake.mean()\n"
        "    return ((1 - d_real).clamp(min=0) ** 2).mean() + ((1 + d_fake).clamp(min=0) ** 2).mean()\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    runs = str(tmp_path / "runs")
    code = ("from smallvision.generative.config import gen_config; print(gen_config('gan', loss='squared-hinge').loss)\n"
            "from smallvision import api; r = api.train(dataset='halves', model='tiny-linear', epochs=30, lr=0.05, "
            f"val_size=0, report=False, runs_dir={runs!r}); print(r.summary['test_accuracy'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)  # one interpreter
    assert out.returncode == 0, out.stderr
    assert "squared-hinge" in out.stdout.split() and float(out.stdout.split()[-1]) == 100.0


def test_all_modules_import():
    for mod in pkgutil.walk_packages(smallvision.__path__, "smallvision."):
        if mod.name != "smallvision.__main__":
            __import__(mod.name)


def test_model_options_given_over_a_recipe_change_only_those_options():
    from smallvision.api import make_config
    from smallvision.recipes import recipe_config

    recipe = recipe_config("mnist-fast").model_args
    assert len(recipe) >= 2  # the recipe sets several options; one flag must not wipe the others
    changed = next(iter(recipe))
    cfg = make_config("mnist-fast", model_args={changed: "new"})
    assert cfg.model_args == {**recipe, changed: "new"}
    # another model: the recipe's options belonged to its own model and are dropped
    assert make_config("mnist-fast", model="lenet5").model_args == {}
    assert make_config("mnist-fast", model="resnet-small", model_args={"width": 8}).model_args == {"width": 8}


def test_a_contract_is_typed_an_unknown_key_fails_at_registration():
    """A typo in a plugin's contract (min_sise=) is an error naming the fields, not a silently
    ignored promise; a key left out takes its field's default."""
    from smallvision.models import MODELS
    from smallvision.models.base import DEFAULT_MIN_SIZE

    with pytest.raises(TypeError, match="min_size"):
        MODELS.register("_typo", "x", min_sise=8)(lambda info: None)
    assert "_typo" not in MODELS
    assert MODELS.entry("cnn-fast").contract.min_size == DEFAULT_MIN_SIZE  # declares none


def test_resolving_a_folder_that_is_not_there_yet_picks_the_photo_recipe(tmp_path):
    """The photo default is a rule on the spec: a folder that is not there yet resolves (to the
    photo recipe; its data rules need the folder, and loading it says it is missing); another data
    set keeps the defaults."""
    from smallvision.recipes import resolve

    cfg = resolve(dataset=f"folder:{tmp_path / 'not-yet'}")
    assert cfg.recipe in ("photo-auto", "photo-fast") and cfg.spec.name == "folder"
    assert resolve(dataset="fashion-mnist").recipe == "" and resolve(dataset="fashion-mnist").model == "cnn-fast"
    assert resolve(dataset=f"folder:{tmp_path}", model="cnn-fast").recipe == ""  # a model named: no rule


def test_the_torchvision_table_is_torchvisions_own():
    """models/tv.py writes out torchvision's published files (so that importing smallvision does not
    import torchvision.models, ~3 s): each entry is its weight enum's DEFAULT, the same crop and statistics."""
    import subprocess
    import sys

    code = "import smallvision.models, sys; print('torchvision.models' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    import torchvision.models as tvm

    from smallvision.models.pretrained import BACKBONES
    from smallvision.models.tv import TORCHVISION

    for name, filename, *_ in TORCHVISION:
        w = tvm.get_model_weights(name).DEFAULT
        t = w.transforms()
        b = BACKBONES[name]
        assert (b.url, b.filename) == (w.url, filename) and w.url.endswith("/" + filename), name
        assert (b.input_size, b.mean, b.std) == (int(t.crop_size[0]), tuple(t.mean), tuple(t.std)), name
