import pkgutil

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


def test_every_module_registers_through_package_import():
    # Importing the sub-packages must register every entry: nothing depends on import order.
    from smallvision.data import DATASETS
    from smallvision.engine.optim import OPTIMIZERS, SCHEDULERS
    from smallvision.models import MODELS

    assert {"mnist", "fashion-mnist", "kmnist", "cifar10", "digits", "idx", "csv", "fake"} <= set(DATASETS.names())
    assert {"sgd", "adam", "adamw", "adadelta", "rmsprop"} == set(OPTIMIZERS.names())
    assert {"step", "multistep", "exponential", "plateau", "onecycle", "cosine", "constant"} == set(SCHEDULERS.names())
    seeds = {"seed-digit-cnn", "seed-mlp-30x30", "seed-mlp-plain", "seed-mlp-relu", "seed-mlp-batchnorm",
             "seed-simple-cnn", "seed-fashion-cnn", "seed-mlp-sigmoid", "seed-mlp-sigmoid-bn"}
    assert seeds | {"lenet5", "cnn-fast", "resnet-small"} <= set(MODELS.names())


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
