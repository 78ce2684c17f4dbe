"""Temperature scaling: the fit recovers a known temperature, never moves an argmax, and a run with
a validation split stores its temperature where evaluate, predict, serve and ONNX all use it."""

import json

import numpy as np
import pytest
import torch

from conftest import _available, run_main
from smallvision.calibration import calibration_errors, fit_temperature, reliability, why_not


def sampled(t_true: float, n: int = 8000, k: int = 10, seed: int = 0):
    """Logits z and labels drawn from softmax(z / t_true): the calibrated temperature is t_true."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g) * 3
    z[torch.arange(n), torch.randint(0, k, (n,), generator=g)] += 4
    y = torch.multinomial((z / t_true).softmax(1), 1, generator=g)[:, 0]
    return z, y


@pytest.mark.parametrize("t_true", [0.5, 2.0])
def test_fit_recovers_the_temperature_that_generated_the_labels(t_true):
    z, y = sampled(t_true)
    t = fit_temperature(z, y)
    assert t == pytest.approx(t_true, rel=0.05)
    before, after = calibration_errors(z, y), calibration_errors(z / t, y)
    assert after["ece"] < before["ece"] and after["nll"] < before["nll"]
    assert after["ece"] < 0.02  # calibrated up to sampling noise


def test_a_temperature_never_moves_the_argmax():
    z, _ = sampled(1.0, n=5000)
    for t in (0.05, 0.3, 1.7, 20.0):
        assert torch.equal((z / t).argmax(1), z.argmax(1))


def test_reliability_bins_count_every_image_once():
    z, y = sampled(1.0, n=3000)
    rel = reliability(z, y)
    assert sum(rel["count"]) == 3000 and len(rel["count"]) == 15
    for lo, hi, n, c in zip(rel["lower"], rel["upper"], rel["count"], rel["confidence"], strict=True):
        if n:
            assert lo <= c <= hi


def test_no_temperature_from_a_split_without_mistakes_or_too_small():
    z, y = sampled(1.0, n=200)
    right = z.argmax(1)
    assert "no mistakes" in why_not(z, right)
    assert "at least" in why_not(z[:20], y[:20])
    assert why_not(z, y) == ""


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    if not _available("mnist"):
        pytest.skip("MNIST files not found (set SMALLVISION_DATA)")
    from smallvision import api

    return api.train("mnist-fast", runs_dir=tmp_path_factory.mktemp("runs"), train_limit=12000, val_size=0.1,
                     name="calibrated").run_dir


@pytest.mark.slow  # ~21 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_a_run_with_validation_is_calibrated_and_every_reader_uses_it(calibrated_run, tmp_path):
    from smallvision.export import export
    from smallvision.modelfile import OnnxModel, load_checkpoint
    from smallvision.predict import Predictor

    doc = json.loads((calibrated_run / "calibration.json").read_text())
    summary = json.loads((calibrated_run / "summary.json").read_text())
    t = doc["temperature"]
    assert summary["calibration"]["temperature"] == t and doc["val_images"] == 1200
    assert doc["test_ece_after"] <= doc["test_ece_before"]  # label smoothing made it underconfident: T < 1
    assert load_checkpoint(calibrated_run / "best.safetensors")[1]["calibration"]["temperature"] == t
    assert (calibrated_run / "reliability.png").stat().st_size > 10_000
    assert "Reliability: accuracy per confidence bin" in (calibrated_run / "report.html").read_text()

    # evaluate: the same accuracy as the run's (a temperature moves no argmax), the calibrated loss
    r = run_main("evaluate", str(calibrated_run), "--no-report", "--json")
    ev = json.loads(r.stdout)
    assert ev["test_accuracy"] == summary["test_accuracy"]
    assert ev["test_loss"] == pytest.approx(doc["test_nll_after"], abs=1e-4)
    assert summary["test_loss"] == pytest.approx(ev["test_loss"], abs=1e-4)  # the run and evaluate agree

    # predict and an exported ONNX file give softmax(raw logits / T)
    p = Predictor.from_checkpoint(calibrated_run, "cpu")
    x = torch.stack([p.preprocess(np.full((28, 28), v, np.uint8)) for v in (0, 80)] +
                    [p.preprocess(np.eye(28, dtype=np.uint8) * 255)])
    with torch.no_grad():
        p.model.temperature = 1.0
        raw = p.model(x)
        p.model.temperature = t
        calibrated = p.model(x)
    assert torch.allclose(calibrated, raw / t, atol=1e-5)
    assert p.card["calibration"].startswith(f"temperature {t:.3f}")  # the page and predict say so
    onnx = OnnxModel.load(export(calibrated_run, "onnx", tmp_path / "m.onnx").path)
    assert Predictor.from_checkpoint(tmp_path / "m.onnx").card["calibration"] == p.card["calibration"]
    assert np.allclose(onnx(x).numpy() if hasattr(onnx(x), "numpy") else onnx(x), calibrated.numpy(), atol=1e-4)

    # calibrate again: the same temperature (the stored one is undone before fitting)
    r = run_main("calibrate", str(calibrated_run), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["temperature"] == pytest.approx(t, rel=1e-3)


def test_calibrate_refuses_a_run_without_validation(tmp_path):
    from smallvision import api

    run = api.train(dataset="fake:1x8x8", data_args={"classes": 3, "train": 60, "test": 30}, model="seed-mlp-plain",
                    epochs=1, val_size=0, runs_dir=tmp_path, report=False).run_dir
    assert "calibration" not in json.loads((run / "summary.json").read_text())
    r = run_main("calibrate", str(run))
    assert r.returncode == 2 and "no validation split" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
