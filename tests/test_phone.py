"""`export --format tflite | executorch`: each file run by its own Python runtime (ai-edge-litert's
Interpreter, ExecuTorch's Runtime) gives PyTorch's logits within 1e-4 and the same top class on 256
real test images; a converter that is not installed is a one-line error naming the extra."""

import json
import sys
from pathlib import Path

import pytest
import torch

from conftest import run_main
from smallvision.export import PhoneModel, check_images, export
from smallvision.modelfile import load_model


@pytest.mark.slow  # each converter takes 10-40 s on 2 cores (CI runs make test-slow)
@pytest.mark.parametrize("fmt", ["tflite", "executorch"])
def test_phone_formats_match_pytorch_in_their_own_runtime(mnist_run, tmp_path, fmt):
    pytest.importorskip("litert_torch" if fmt == "tflite" else "executorch")
    r = export(mnist_run, fmt, tmp_path / f"model.{fmt}", check_n=256)
    assert r.ok and r.images == 256 and r.max_abs_diff <= 1e-4 and r.same_argmax
    # again, independently of export's own check: the written file, on the next 256 test images
    model, meta = load_model(mnist_run / "best.safetensors", "cpu")
    x, _ = check_images(meta, 512, None)
    x = x[256:]
    with torch.inference_mode():
        ref = model.float().eval()(x)
    got = PhoneModel(Path(r.path).read_bytes(), fmt)(x)
    assert (got.argmax(1) == ref.argmax(1)).all() and float((got - ref).abs().max()) <= 1e-4
    doc = json.loads(Path(r.path + ".json").read_text())  # the document the file format has no place for
    assert doc["preprocessing"]["class_names"] == [str(i) for i in range(10)] and doc["exported_as"] == fmt


@pytest.mark.slow  # calibration and the whole test set one image at a time: ~1 CPU-min each
@pytest.mark.parametrize("fmt", ["tflite-int8", "executorch-int8"])
def test_phone_int8_keeps_accuracy_on_the_whole_test_set(mnist_run, tmp_path, fmt):
    pytest.importorskip("litert_torch" if fmt.startswith("tflite") else "executorch")
    r = export(mnist_run, fmt, tmp_path / f"model.{fmt}")
    assert r.images == 10_000 and r.reference_accuracy - r.accuracy <= 0.3 and r.accuracy > 98
    fp32 = export(mnist_run, fmt.removesuffix("-int8"), tmp_path / "fp32")
    assert r.bytes < 0.35 * fp32.bytes  # int8 weights
    assert "quantization" in json.loads(Path(r.path + ".json").read_text())


def test_a_missing_converter_names_the_extra(mnist_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # as if the phone extra were not installed
    r = run_main("export", str(mnist_run), "--format", "tflite", "--out", str(tmp_path / "m.tflite"), "--check-images", "8")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "pip install 'smallvision[phone]'" in r.stderr and r.stderr.strip().count("\n") == 0
    assert not list(tmp_path.iterdir())  # nothing written


def test_unknown_format_lists_the_phone_formats(mnist_run):
    r = run_main("export", str(mnist_run), "--format", "coreml")
    assert r.returncode == 2 and "tflite" in r.stderr and "executorch" in r.stderr and "web" in r.stderr


@pytest.mark.slow  # imports the LiteRT converter (~10 s)
def test_a_layer_litert_cannot_lower_is_one_line():
    """fashion-fast's adaptive max pooling has no LiteRT lowering: said in one line, nothing written."""
    pytest.importorskip("litert_torch")
    from smallvision.errors import UsageError
    from smallvision.export import _write_tflite

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveMaxPool2d(2), torch.nn.Flatten())
    with pytest.raises(UsageError, match="cannot be converted to TFLite .*adaptive_max_pool2d") as e:
        _write_tflite(net.eval(), torch.ones(2, 1, 12, 12), {"model": "cnn-fast"}, None)
    assert "\n" not in str(e.value)
