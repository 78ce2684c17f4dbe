"""Heatmaps: the CLI writes one picture per image and explain.json; where the map points is checked
on a synthetic set whose answer is known (a shape on clutter, the slow test); bad input is one line."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_main
from smallvision.explain import mass_inside


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    from smallvision.data import load_dataset

    d = load_dataset("mnist")
    folder = tmp_path_factory.mktemp("digits")
    for i in range(3):
        Image.fromarray(d.test_x[i, 0].numpy()).save(folder / f"d{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    return folder, [str(int(v)) for v in d.test_y[:3]]


def test_explain_writes_a_picture_per_image_and_names_the_broken_one(mnist_run, digit_files, tmp_path):
    folder, labels = digit_files
    out = tmp_path / "why"
    r = run_main("explain", str(mnist_run), str(folder), "--out", str(out))
    assert r.returncode == 1  # one file is not an image: named, the others explained
    rows = json.loads((out / "explain.json").read_text())
    by_name = {r["file"].rsplit("/", 1)[-1]: r for r in rows}
    assert "error" in by_name["broken.png"] and "broken.png: ERROR" in r.stdout
    for i, want in enumerate(labels):
        row = by_name[f"d{i}.png"]
        assert row["label"] == want and row["methods"] == ["gradcam", "occlusion"]  # 28 px: both
        assert Image.open(row["figure"]).size[0] > 500


def test_explain_bad_input_is_one_line(mnist_run, mnist_onnx, digit_files, tmp_path):
    folder, _ = digit_files
    for args, words in [((str(mnist_onnx), str(folder / "d0.png")), "no gradients"),
                        ((str(mnist_run), str(folder / "d0.png"), "--layer", "nope"), "no such module"),
                        ((str(mnist_run), str(tmp_path)), "no images in this folder"),
                        ((str(mnist_run), str(folder / "d0.png"), "--top-k", "0"), "--top-k")]:
        r = run_main("explain", *args)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1


def test_a_model_without_a_feature_map_gets_occlusion(tmp_path):
    from smallvision import api
    from smallvision.explain import Explainer

    run = api.train(dataset="fake:1x12x12", data_args={"classes": 3, "train": 60, "test": 30}, model="seed-mlp-plain",
                    epochs=1, val_size=0, runs_dir=tmp_path, report=False).run_dir
    ex = Explainer.from_checkpoint(run)
    assert ex.methods == ["occlusion"]
    (row,) = ex.explain([np.zeros((12, 12), np.uint8)])
    assert row["heatmaps"]["occlusion"].shape == (12, 12)


def test_mass_inside_a_box():
    m = torch.zeros(2, 10, 10)
    m[0, 2:4, 3:5] = 1.0
    m[1] = 1.0  # a uniform map: its area share
    share = mass_inside(m, [(2, 3, 2, 2), (0, 0, 5, 4)])
    assert share.tolist() == pytest.approx([1.0, 0.2])


@pytest.mark.slow
def test_gradcam_points_at_the_shape_that_decides_the_class(tmp_path):
    """A trained model's Grad-CAM mass lies mostly inside the deciding shape's box (6 % of the
    image), where a random map would put about 6 %."""
    from smallvision import api
    from smallvision.data.info import DatasetInfo
    from smallvision.data.loader import as_model_input
    from smallvision.data.synthetic import shapes
    from smallvision.explain import gradcam
    from smallvision.modelfile import load_model

    size, n_train, n_test = 48, 3000, 300
    run = api.train(dataset=f"fake:1x{size}x{size}", data_args={"kind": "shapes", "classes": 4, "train": n_train,
                                                                "test": n_test},
                    model="cnn-fast", epochs=4, lr=3e-3, optimizer="adamw", scheduler="onecycle", batch_size=64,
                    val_size=0, runs_dir=tmp_path, report=False)
    assert run.summary["test_accuracy"] >= 95
    model, meta = load_model(run.run_dir)
    g = torch.Generator().manual_seed(0)  # the fake entry's generator: the training set, then the test set
    shapes(n_train, 4, 1, size, size, g)
    x, y, boxes = shapes(n_test, 4, 1, size, size, g)
    info = DatasetInfo.from_dict(meta["dataset"])
    xs = as_model_input(torch.from_numpy(x), info.mean, info.std, "cpu")
    share = mass_inside(gradcam(model, xs, torch.from_numpy(y)), [tuple(b) for b in boxes])
    assert share.mean() >= 0.70
    noise = mass_inside(torch.rand(n_test, size, size, generator=g), [tuple(b) for b in boxes])
    assert noise.mean() == pytest.approx((size // 4) ** 2 / size**2, abs=0.01)
