"""Multi-label classification: fastai's CSV layout and the composed-digits set train from the CLI;
thresholds come from the validation split only; predict, serve and ONNX return every label above
its threshold; bad CSVs and settings without a multi-label meaning are one-line errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import needs_mnist, run_main
from smallvision import api
from smallvision.data import load_dataset
from smallvision.data.multilabel import _csv_fixture
from smallvision.errors import UsageError
from smallvision.modelfile import load_checkpoint
from smallvision.multilabel import choose_thresholds, metrics
from smallvision.predict import Predictor

FAST = ["--model", "cnn-fast", "--model-arg", "widths=[16,32]", "--model-arg", "hidden=64", "--epochs", "8", "--batch-size", "32",
        "--lr", "3e-3", "--val-size", "0.25", "--data-arg", "workers=0"]


def corners(tmp_path: Path) -> Path:
    """240 images (24 px) with yellow squares in some of their four corners; labels: the corners."""
    return Path(_csv_fixture(tmp_path)["dataset"].removeprefix("multilabel:"))


def corner_image(path: Path, which: list[str]) -> str:
    a = np.random.default_rng(5).integers(0, 60, (24, 24, 3), dtype=np.uint8)
    for c in which:
        y0, x0 = {"tl": (0, 0), "tr": (0, 12), "bl": (12, 0), "br": (12, 12)}[c]
        a[y0 : y0 + 12, x0 : x0 + 12] = (200, 180, 60)
    Image.fromarray(a).resize((96, 96), Image.NEAREST).save(path)  # bigger than trained on: resized by predict
    return str(path)


def test_thresholds_are_chosen_per_rule_on_the_given_split():
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(400, 3, generator=g) < 0.4).float()
    # class 0 separates at p 0.7, class 1 at 0.3, class 2 at 0.5
    cut = torch.tensor([0.7, 0.3, 0.5])
    p = torch.where(y > 0, cut + (1 - cut) * torch.rand(400, 3, generator=g), cut * torch.rand(400, 3, generator=g))
    per = choose_thresholds(p, y, "per-class")
    assert per[0] >= 0.65 and per[1] <= 0.35 and 0.45 <= per[2] <= 0.55
    m = metrics(torch.logit(p.clamp(1e-6, 1 - 1e-6)), y, per)
    assert m["macro_f1"] > 0.98 and m["exact_match"] > 95
    one = choose_thresholds(p, y, "global")
    assert len(set(one)) == 1 and metrics(torch.logit(p.clamp(1e-6, 1 - 1e-6)), y, one)["macro_f1"] < m["macro_f1"]
    assert choose_thresholds(p, y, 0.3) == [0.3] * 3


@pytest.mark.slow  # ~10 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_a_csv_multilabel_set_trains_from_the_cli_and_predicts_every_label(tmp_path):
    root = corners(tmp_path)
    r = run_main("train", "--dataset", f"multilabel:{root}", *FAST, "--threshold", "per-class",  # the CLI, in-process
                 "--runs-dir", str(tmp_path / "runs"), "--name", "corners", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["test_macro_f1"] > 0.9 and s["test_map"] > 0.9, s
    run = Path(s["run_dir"])
    doc = json.loads((run / "thresholds.json").read_text())
    assert doc["rule"] == "per-class" and len(doc["values"]) == 4 and "validation" in doc["chosen"]
    assert load_checkpoint(run / "best.safetensors")[1]["thresholds"]["values"] == doc["values"]
    rep = json.loads((run / "report.json").read_text())
    assert rep["task"] == "multilabel" and [c["class"] for c in rep["per_class"]] == ["bl", "br", "tl", "tr"]
    assert sum(c["train images"] for c in rep["per_class"]) > 180  # labels carried by the training split
    assert (run / "top_losses.png").is_file() and "macro-F1" in (run / "report.md").read_text()

    # predict: every corner present, none absent, on a bigger image than the training ones
    two = corner_image(tmp_path / "two.png", ["tl", "br"])
    three = corner_image(tmp_path / "three.png", ["tr", "bl", "br"])
    rows = [json.loads(line) for line in run_main("predict", str(run), two, three, "--format", "json").stdout.splitlines()]
    assert sorted(rows[0]["labels"]) == ["br", "tl"] and sorted(rows[1]["labels"]) == ["bl", "br", "tr"]
    assert rows[0]["label"] == " ".join(rows[0]["labels"])  # fastai's layout: space-separated
    # evaluate scores at the run's own thresholds: the summary's figures
    ev = api.evaluate(run, report=False)
    assert ev["test_accuracy"] == pytest.approx(s["test_accuracy"], abs=1e-6)
    assert ev["test_macro_f1"] == pytest.approx(s["test_macro_f1"], abs=1e-6)

    # an ONNX export carries the thresholds and decides the same
    from smallvision.export import export

    onnx_path = export(run, "onnx").path
    assert Predictor.from_checkpoint(onnx_path).predict([two, three])[1]["labels"] == rows[1]["labels"]


def test_thresholds_never_look_at_the_test_split(tmp_path):
    """The same run with the test CSV's labels scrambled chooses the same thresholds."""
    root = corners(tmp_path)
    lines = (root / "labels.csv").read_text().splitlines()
    (root / "train.csv").write_text("\n".join(lines[:181]) + "\n")
    (root / "test.csv").write_text("\n".join([lines[0], *lines[181:]]) + "\n")
    rng = np.random.default_rng(1)
    scrambled = [lines[0]] + [f"{ln.split(',')[0]},{' '.join(rng.choice(['tl', 'tr', 'bl', 'br'], 2, replace=False))}"
                              for ln in lines[181:]]
    (root / "scrambled.csv").write_text("\n".join(scrambled) + "\n")
    out = []
    for test in ("test.csv", "scrambled.csv"):
        r = api.train(dataset=f"multilabel:{root / 'train.csv'}", data_args={"test": str(root / test), "workers": 0},
                      model="cnn-fast", model_args={"widths": [16, 32], "hidden": 64}, epochs=4, batch_size=32, lr=3e-3,
                      val_size=0.25, threshold="per-class", runs_dir=tmp_path / "runs", report=False, name=test)
        out.append((json.loads((r.run_dir / "thresholds.json").read_text())["values"], r.summary["test_macro_f1"]))
    assert out[0][0] == out[1][0]  # chosen on validation: the test labels changed nothing
    assert out[1][1] < out[0][1] - 0.2  # ... while the test figures did move


def test_bad_multilabel_input_is_one_line(tmp_path):
    root = corners(tmp_path)
    lines = (root / "labels.csv").read_text().splitlines()
    (root / "missing.csv").write_text("\n".join([*lines[:5], "images/nope.png,tl"]) + "\n")
    (root / "empty.csv").write_text("\n".join([*lines[:5], "images/7.png,"]) + "\n")
    for csv_name, message in (("missing.csv", "row 6 names"), ("empty.csv", "row 6 (images/7.png) has an empty label set")):
        r = run_main("train", "--dataset", f"multilabel:{root / csv_name}", "--epochs", "1")
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    r = run_main("train", "--dataset", f"multilabel:{tmp_path / 'nowhere.csv'}")
    assert r.returncode == 2 and "no such file" in r.stderr
    for flag, value in (("--class-weights", "auto"), ("--sampler", "balanced"), ("--label-smoothing", "0.1")):
        r = run_main("train", "--dataset", f"multilabel:{root}", "--data-arg", "workers=0", flag, value, "--epochs", "1")
        assert r.returncode == 2 and "multi-label" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    with pytest.raises(UsageError, match="--threshold"):
        api.train(dataset=f"multilabel:{root}", threshold="often", epochs=1, runs_dir=tmp_path / "runs")


@pytest.mark.slow  # a real-data accuracy threshold (22 s): make test-all
@needs_mnist
def test_composed_digits_predict_every_digit_on_a_canvas(tmp_path):
    """The multi-mnist set: 1-3 different digits per 56-px canvas; a short run, then a canvas made
    here from MNIST test digits, each digit listed."""
    r = api.train("multi-mnist-fast", runs_dir=tmp_path / "runs", data_args={"train": 14000, "test": 1000},
                  epochs=4, report=False)
    assert r.summary["test_macro_f1"] > 0.85, r.summary
    d = load_dataset("mnist")
    canvas = np.zeros((56, 56), dtype=np.uint8)
    picks = {1: (0, 0), 4: (0, 28), 7: (28, 14)}
    for digit, (top, left) in picks.items():
        img = d.test_x[int(torch.nonzero(d.test_y == digit)[3])][0].numpy()
        canvas[top : top + 28, left : left + 28] = np.maximum(canvas[top : top + 28, left : left + 28], img)
    Image.fromarray(canvas).save(tmp_path / "147.png")
    (p,) = Predictor.from_checkpoint(r.run_dir).predict([str(tmp_path / "147.png")])
    assert sorted(p["labels"]) == ["1", "4", "7"], p
