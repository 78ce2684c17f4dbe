"""Export to ONNX / TorchScript / safetensors, checked against PyTorch on real MNIST test images;
the preprocessing travels inside the file, and `predict` runs an exported ONNX file."""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from conftest import needs_mnist, run_cli, run_main
from smallvision import api
from smallvision.data import load_dataset
from smallvision.data.loader import as_model_input
from smallvision.errors import CheckpointError, UsageError
from smallvision.export import TOLERANCE, export
from smallvision.modelfile import OnnxModel, load_model
from smallvision.predict import Predictor

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))  # the test builders


@needs_mnist
def test_onnx_matches_pytorch_on_the_whole_test_set(mnist_run, mnist_onnx):
    """Not only the export's own 256-image check: all 10 000 test images, logits and argmax."""
    model, meta = load_model(mnist_run, "cpu")
    data = load_dataset("mnist")
    x = as_model_input(data.test_x, meta["dataset"]["mean"], meta["dataset"]["std"], torch.device("cpu")).float()
    with torch.inference_mode():
        ref = torch.cat([model.float()(x[i : i + 2000]) for i in range(0, len(x), 2000)])
    got = torch.from_numpy(np.concatenate([OnnxModel.load(mnist_onnx).run(x[i : i + 2000].numpy())
                                           for i in range(0, len(x), 2000)]))
    assert (ref - got).abs().max() <= TOLERANCE
    assert torch.equal(ref.argmax(1), got.argmax(1))
    accuracy = (got.argmax(1) == data.test_y).float().mean() * 100
    assert accuracy > 97  # a real model, not a constant: the parity is meaningful


@needs_mnist
def test_the_preprocessing_and_card_are_inside_the_onnx_file(mnist_run, mnist_onnx):
    props = {p.key: p.value for p in onnx.load(str(mnist_onnx)).metadata_props}
    doc = json.loads(props["smallvision"])
    assert json.loads(props["class_names"]) == [str(i) for i in range(10)]
    assert props["input_size"] == "1x28x28" and json.loads(props["mean"]) == doc["dataset"]["mean"]
    assert doc["preprocessing"]["invert"].startswith("auto") and doc["preprocessing"]["center"].startswith("mnist")
    summary = json.loads((mnist_run / "summary.json").read_text())
    assert doc["card"]["test_accuracy"] == summary["test_accuracy"] and doc["card"]["model"] == "cnn-fast"


@needs_mnist
@pytest.mark.parametrize("fmt", ["torchscript", "safetensors"])
def test_torchscript_and_safetensors_exports_match(mnist_run, tmp_path, fmt):
    r = export(mnist_run, fmt, out=tmp_path / f"m.{fmt}")
    assert r.ok and r.checked_on == "256 mnist test images" and r.max_abs_diff <= TOLERANCE
    if fmt == "torchscript":
        extra = {"smallvision.json": ""}
        torch.jit.load(r.path, _extra_files=extra)
        assert json.loads(extra["smallvision.json"])["dataset"]["num_classes"] == 10
    else:
        from safetensors import safe_open

        with safe_open(r.path, "pt") as f:  # readable by any safetensors tool, classes in plain keys
            assert json.loads(f.metadata()["class_names"])[3] == "3"
        assert Predictor.from_checkpoint(r.path).card["test_accuracy"] is not None


@needs_mnist
def test_predict_on_the_onnx_file_gives_the_checkpoints_answers(mnist_run, mnist_onnx, tmp_path):
    from make_scans import make

    files = make(tmp_path / "scans", seed=2)  # dark-on-light digits of many sizes: the full preprocessing
    a = Predictor.from_checkpoint(mnist_run).predict(files)
    b = Predictor.from_checkpoint(mnist_onnx).predict(files)
    assert [p["label"] for p in a] == [p["label"] for p in b]
    assert max(abs(p["probability"] - q["probability"]) for p, q in zip(a, b, strict=True)) < 1e-3
    assert sum(p["label"] == Path(p["file"]).name[0] for p in b) >= 34
    r = run_main("predict", str(mnist_onnx), str(files[0]), "--format", "json")  # the command line, in-process
    assert r.returncode == 0 and json.loads(r.stdout)["label"] == b[0]["label"]


@pytest.mark.slow  # ~9 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_export_with_tta_views_matches(tmp_path):
    """A model tested with shifted and mirrored views exports those views too."""
    res = api.train(runs_dir=tmp_path / "runs", dataset="digits", model="cnn-fast", epochs=1, shift=1,
                    hflip=True, tta=True, report=False)
    r = export(res.run_dir, "onnx")
    assert r.ok and r.checked_on.endswith("digits test images")
    assert json.loads(onnx_meta(r.path)["smallvision"])["card"]["tta_views"] == 10


def onnx_meta(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_export_errors_are_one_line(tmp_path):
    res = api.train(runs_dir=tmp_path / "runs", dataset="digits", model="seed-mlp-plain", epochs=1, report=False)
    with pytest.raises(UsageError, match="--format must be one of onnx"):
        export(res.run_dir, "coreml")
    r = run_main("export", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such checkpoint" in r.stderr
    plain = tmp_path / "plain.onnx"  # an ONNX file from elsewhere: no smallvision metadata
    torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(plain), dynamo=False)
    with pytest.raises(CheckpointError, match="without smallvision metadata"):
        Predictor.from_checkpoint(plain)
    (tmp_path / "junk.onnx").write_text("not a model")
    r = run_main("predict", str(tmp_path / "junk.onnx"), str(plain))
    assert r.returncode == 2 and "not a readable ONNX model" in r.stderr and "Traceback" not in r.stderr


def test_export_without_the_data_set_says_it_checked_random_inputs(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {k: rng.integers(0, 255, (40, 12, 12), dtype=np.uint8) for k in ("x_train", "x_test")}
    np.savez(tmp_path / "small.npz", **arrays, y_train=np.arange(40) % 3, y_test=np.arange(40) % 3)
    res = api.train(runs_dir=tmp_path / "runs", dataset=f"npz:{tmp_path / 'small.npz'}", model="seed-mlp-plain",
                    epochs=1, report=False)
    (tmp_path / "small.npz").unlink()  # exported on a machine without the data: said, not hidden
    r = export(res.run_dir, "onnx", check_n=64)
    assert r.ok and r.checked_on.startswith("64 random inputs (no test images here")
    out = run_main("export", str(res.run_dir), "--format", "torchscript", "--json")
    assert out.returncode == 0 and "random inputs" in json.loads(out.stdout)["checked_on"]


@pytest.mark.slow  # ~8 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
@needs_mnist
def test_int8_export_keeps_test_accuracy_predicts_and_serves(mnist_run, mnist_onnx, tmp_path):
    """Static int8 (QDQ): checked by accuracy on the whole test set, a quarter of the fp32 file,
    and `predict`/`serve` take it like any exported ONNX file."""
    import httpx
    from make_scans import make

    from smallvision.serve import create_app
    from test_serve import running

    r = export(mnist_run, "onnx-int8", out=tmp_path / "m-int8.onnx")
    assert r.ok and r.checked_on == "10000 mnist test images"
    assert r.reference_accuracy > 97 and r.reference_accuracy - r.accuracy <= 0.3
    proto = onnx.load(r.path)
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in proto.graph.initializer)  # int8 weights stored
    assert r.bytes < 0.5 * Path(mnist_onnx).stat().st_size
    meta = json.loads(onnx_meta(r.path)["smallvision"])
    assert meta["exported_as"] == "onnx-int8" and meta["quantization"]["calibration_images"] == 512

    files = make(tmp_path / "scans", seed=2)
    # the top classes (the fp32 graph may also answer "none of these"; int8 carries no OOD output)
    fp32 = [p["top_k"][0][0] for p in Predictor.from_checkpoint(mnist_onnx).predict(files)]
    int8 = [p["top_k"][0][0] for p in Predictor.from_checkpoint(r.path).predict(files)]
    assert "ood" not in meta
    assert sum(a == b for a, b in zip(fp32, int8, strict=True)) >= len(files) - 1
    with running(create_app(r.path)) as base, httpx.Client(base_url=base, timeout=10) as c:
        assert c.get("/info").json()["runtime"] == "onnxruntime"
        got = c.post("/predict", files={"file": ("d.png", Path(files[0]).read_bytes())}).json()["label"]
    assert got == int8[0]


@pytest.mark.slow  # ~6 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
@needs_mnist
def test_int8_export_that_loses_too_much_accuracy_is_refused_and_kept_aside(mnist_run, tmp_path):
    dest = tmp_path / "m-int8.onnx"
    with pytest.raises(UsageError, match=r"int8 accuracy .* below fp32's .*--max-drop"):
        export(mnist_run, "onnx-int8", out=dest, max_drop=-1.0, calibration_n=32)  # no drop can beat -1 point
    assert not dest.exists() and Path(str(dest) + ".failed").is_file()


def test_int8_export_without_the_training_images_is_one_line(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {k: rng.integers(0, 255, (40, 12, 12), dtype=np.uint8) for k in ("x_train", "x_test")}
    np.savez(tmp_path / "small.npz", **arrays, y_train=np.arange(40) % 3, y_test=np.arange(40) % 3)
    res = api.train(runs_dir=tmp_path / "runs", dataset=f"npz:{tmp_path / 'small.npz'}", model="seed-mlp-plain",
                    epochs=1, report=False)
    (tmp_path / "small.npz").unlink()
    out = run_main("export", str(res.run_dir), "--format", "onnx-int8")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "calibrates on the model's training images" in out.stderr


@needs_mnist
@pytest.mark.slow  # 14 s: keeps the default suite under 3 minutes on 2 cores
def test_benchmark_measures_every_format_side_by_side(mnist_run):
    """One table: each format's size, accuracy on the whole test set and speed, from files that
    `export` wrote and checked; the int8 row's delta is against fp32 ONNX."""
    r = run_cli("benchmark", str(mnist_run), "--images", "512", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rows = {row["format"]: row for row in doc["rows"]}
    assert list(rows) == ["pytorch-fp32", "pytorch-bf16", "torchscript", "onnx", "onnx-int8", "openvino"]
    summary = json.loads((mnist_run / "summary.json").read_text())
    measured = [row for row in rows.values() if "accuracy" in row]
    for row in measured:
        assert row["latency_ms"] > 0 and row["images_per_s"] > 0 and row["bytes"] > 0
    # fp32 runtimes agree with the run's own test figure (bf16 and int8 may move a few images)
    for fmt in ("pytorch-fp32", "torchscript", "onnx"):
        assert rows[fmt]["accuracy"] == pytest.approx(summary["test_accuracy"], abs=0.02)
    assert abs(rows["pytorch-bf16"]["accuracy"] - rows["pytorch-fp32"]["accuracy"]) < 0.3
    assert rows["onnx-int8"]["bytes"] < 0.5 * rows["onnx"]["bytes"]
    assert doc["int8"]["accuracy_delta"] == pytest.approx(rows["onnx-int8"]["accuracy"] - rows["onnx"]["accuracy"], abs=0.01)
    if "accuracy" in rows["openvino"]:  # installed by make setup; else the row says how to get it
        assert abs(rows["openvino"]["accuracy"] - rows["onnx"]["accuracy"]) < 0.1
    else:
        assert "pip install openvino" in rows["openvino"]["note"]
    assert json.loads((mnist_run / "benchmark.json").read_text())["rows"] == doc["rows"]
    bad = run_main("benchmark", str(mnist_run), "--formats", "onnx,coreml")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown coreml" in bad.stderr
