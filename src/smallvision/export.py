"""Export a trained classifier to ONNX, TorchScript or a portable safetensors file, checked
against PyTorch on real test images.

    from smallvision.export import export
    r = export("runs/mnist-fast-.../", fmt="onnx")      # -> runs/mnist-fast-.../model.onnx
    r.max_abs_diff, r.same_argmax, r.checked_on

Every exported file carries the same self-description as a checkpoint, inside it (ONNX
``metadata_props``, TorchScript ``extra_files``, safetensors ``__metadata__``): the model,
its data set (input size, channels, mean, std, class names), the preprocessing rule
(``invert``/``center``), the model card (test accuracy, parameters) and the parity check
that was run. `smallvision predict` and `smallvision serve` take an exported ``.onnx`` too
(`OnnxModel`): the same preprocessing as the checkpoint, onnxruntime instead of PyTorch.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallvision.errors import UsageError
from smallvision.io import atomic_write_bytes
from smallvision.modelfile import OnnxModel, model_card, preprocessing

FORMATS = {"onnx": ".onnx", "onnx-int8": "-int8.onnx", "torchscript": ".pt", "safetensors": ".safetensors",
           "tflite": ".tflite", "tflite-int8": "-int8.tflite", "executorch": ".pte", "executorch-int8": "-int8.pte"}
# phones: LiteRT (TensorFlow Lite) through litert-torch, ExecuTorch with the XNNPACK backend; both take one
# image at a time (batch 1, the shape they are converted with) and give the logits predict gives (the
# temperature included, no "none of these" output). Neither file format has a place for our document,
# so it is written beside the file (model.tflite.json), and the check runs each file in its own runtime.
PHONE = ("tflite", "executorch")  # and their -int8 forms (_export_phone_int8)
EXPORT_FORMAT = "smallvision-export"
TOLERANCE = 1e-4  # max abs logit difference accepted between PyTorch and the exported model
INT8_MAX_DROP = 0.3  # onnx-int8: accuracy points it may lose against fp32 ONNX on the test set
INT8_CALIBRATION = 512  # training images the int8 activation ranges are calibrated on


@dataclass
class ExportResult:
    path: str
    format: str
    checked_on: str  # what the parity check ran on
    images: int
    max_abs_diff: float
    same_argmax: bool
    bytes: int
    # onnx-int8: checked by accuracy on the test set instead of logit equality
    accuracy: float | None = None  # % of the test images right, the exported model
    reference_accuracy: float | None = None  # % right, the same model in fp32 ONNX
    max_drop: float | None = None  # accuracy points accepted below the reference

    @property
    def ok(self) -> bool:
        if self.accuracy is not None:
            return self.reference_accuracy - self.accuracy <= self.max_drop  # type: ignore[operator]
        return self.same_argmax and self.max_abs_diff <= TOLERANCE


def check_images(meta: dict[str, Any], n: int, data_dir: str | None) -> tuple[torch.Tensor, str]:
    """The first `n` test images of the model's own data set, normalised as the model expects;
    random inputs (said so) when the data set cannot be read here."""
    from smallvision.config import from_dict
    from smallvision.data import load_dataset
    from smallvision.data.info import DatasetInfo
    from smallvision.data.loader import as_model_input

    info = DatasetInfo.from_dict(meta["dataset"])
    cfg = from_dict(meta.get("config", {}))
    try:
        data = load_dataset(cfg.dataset, data_dir if data_dir is not None else cfg.data_dir, cfg.data_args)
    except UsageError as e:
        g = torch.Generator().manual_seed(0)
        return torch.randn(n, *info.input_shape, generator=g), f"{n} random inputs (no test images here: {str(e).split(' (')[0]})"
    x = data.test_x[:n]
    return as_model_input(x, info.mean, info.std, torch.device("cpu")).float(), f"{len(x)} {cfg.dataset} test images"


def _compare(ref: torch.Tensor, got: np.ndarray | torch.Tensor) -> tuple[float, bool]:
    got_t = torch.as_tensor(np.asarray(got)).float()
    return float((ref - got_t).abs().max()), bool((ref.argmax(1) == got_t.argmax(1)).all())


def export(checkpoint: str | Path, fmt: str = "onnx", out: str | Path | None = None, data_dir: str | None = None,
           check_n: int = 256, opset: int | None = None, max_drop: float = INT8_MAX_DROP,
           calibration_n: int = INT8_CALIBRATION) -> ExportResult:
    """Write the model of `checkpoint` (a run folder or a .safetensors file) as `fmt` and check
    it against PyTorch (fp32) on `check_n` real test images. Raises UsageError when the check fails
    (the file is kept, for inspection, with a ``.failed`` suffix).

    ``onnx-int8``: the fp32 ONNX graph, statically quantized by onnxruntime (QDQ, int8 weights per
    channel, uint8 activations whose ranges come from `calibration_n` seeded training images); its
    check is accuracy on the whole test set, at most `max_drop` points below the fp32 graph's."""
    from smallvision.modelfile import load_model, resolve

    if fmt in ("web", "web-int8"):
        raise UsageError(f"{fmt} is a folder, not a file: smallvision.web.export_web(run) writes it (the CLI's "
                         "--format web does)")
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, web, web-int8; got {fmt!r}")
    if check_n < 1:
        raise UsageError(f"--check-images must be ≥ 1, got {check_n}")
    ckpt = resolve(checkpoint)
    model, meta = load_model(ckpt, "cpu")
    model = model.float().eval()
    dest = Path(out) if out else ckpt.parent / f"model{FORMATS[fmt]}"
    if dest.is_dir():
        raise UsageError(f"{dest}: is a folder; give the file to write")
    if not dest.parent.is_dir():
        raise UsageError(f"{dest.parent}: no such folder")
    x, checked_on = check_images(meta, check_n, data_dir)
    with torch.inference_mode():
        ref = model(x).float()
    doc = {**{k: v for k, v in meta.items() if k not in ("format", "format_version", "data_sha256")},
           "format": EXPORT_FORMAT, "exported_as": fmt, "preprocessing": preprocessing(meta),
           "card": model_card(meta, ckpt), "source": str(ckpt)}
    if fmt == "onnx-int8":
        return _export_int8(model, meta, doc, dest, x, data_dir, opset, max_drop, calibration_n)
    if fmt in ("tflite-int8", "executorch-int8"):
        return _export_phone_int8(fmt, model, meta, doc, dest, x, data_dir, max_drop, calibration_n)
    writer = {"onnx": _write_onnx, "torchscript": _write_torchscript, "safetensors": _write_safetensors,
              "tflite": _write_tflite, "executorch": _write_executorch}[fmt]
    blob = writer(model, x[:2], doc, opset)
    diff, same = _check(fmt, blob, x, ref)
    if fmt in PHONE:
        atomic_write_bytes(str(dest) + ".json", json.dumps({k: v for k, v in doc.items() if k != "ood"}, indent=1).encode())
    if fmt == "onnx" and "ood" in doc and getattr(model, "ood", None) is not None:
        diff = max(diff, _ood_diff(model, blob, x))
    result = ExportResult(str(dest), fmt, checked_on, len(x), diff, same, len(blob))
    if not result.ok:
        atomic_write_bytes(str(dest) + ".failed", blob)
        raise UsageError(f"{dest}: the exported model differs from PyTorch on {checked_on} (max abs logit "
                         f"difference {diff:.2e}, same top class: {same}); kept as {dest}.failed")
    atomic_write_bytes(dest, blob)
    return result


def model_images(meta: dict[str, Any], data_dir: str | None, train_n: int = 0, seed: int = 0
                 ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, str]:
    """The model's own data set, normalised as the model expects, on the CPU: (a seeded sample of
    `train_n` training images or None, every test image, test labels, the data set's name).
    Raises UsageError, naming the data set, when it cannot be read here."""
    from smallvision.config import from_dict
    from smallvision.data import load_dataset
    from smallvision.data.folder import ImageFiles, decode_all
    from smallvision.data.info import DatasetInfo
    from smallvision.data.loader import as_model_input

    info = DatasetInfo.from_dict(meta["dataset"])
    cfg = from_dict(meta.get("config", {}))
    data = load_dataset(cfg.dataset, data_dir if data_dir is not None else cfg.data_dir, cfg.data_args)
    # float32 tensors, or for big sets (a 224-px folder) a view that normalises each slice taken
    put = lambda xs: as_model_input(xs, info.mean, info.std, torch.device("cpu"))  # noqa: E731
    train = None
    if train_n:
        pick = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(seed))[:train_n]
        tx = data.train_x[pick]
        if isinstance(tx, ImageFiles):  # a streamed folder: decode just the sample
            tx = decode_all(tx.items, tx.channels, tx.size, tx.workers)[0]
        train = put(tx)
    return train, put(data.test_x), data.test_y, cfg.dataset


def _accuracy(run: Any, x: Any, y: torch.Tensor, batch: int = 256) -> float:
    """% of `x` (a tensor or NormalizedView) that `run` (tensor -> logits) gets right: the top class
    is `y`; multi-label: every class's p ≥ 0.5 decision matches (exact match)."""
    from smallvision.engine.evaluate import n_correct

    right = sum(int(n_correct(run(x[i : i + batch]), y[i : i + batch])) for i in range(0, len(x), batch))
    return 100.0 * right / max(len(x), 1)


def quantize_int8(blob: bytes, calibration: torch.Tensor, batch: int = 32) -> bytes:
    """Static int8 quantization of an fp32 ONNX model with onnxruntime's tools (shape-inference
    pre-processing, then QDQ with per-channel int8 weights and uint8 activations, min/max ranges
    from `calibration`), keeping the model's metadata."""
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([calibration[i : i + batch].numpy() for i in range(0, len(calibration), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            xb = next(self.batches, None)
            return None if xb is None else {"image": np.ascontiguousarray(xb, dtype=np.float32)}

    src = onnx.load_from_string(blob)
    logging.disable(logging.WARNING)  # the tool logs each weight it keeps per tensor (BatchNorm's 1-D ones)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp32, pre, out = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        fp32.write_bytes(blob)  # from a file: a ModelProto argument trips the tool's external-data path
        # no graph optimisation here: it fuses BatchNorm into each Conv *node*, so a model whose
        # test-time views call the same layers 10 times got 10 fused weight copies (fashion-fast:
        # 3.2 MB int8 against 1.8 MB fp32); onnxruntime fuses at load time anyway (0.70 MB, same accuracy)
        quant_pre_process(fp32, pre, skip_optimization=True, skip_symbolic_shape=True)
        quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        q = onnx.load(out)
    logging.disable(logging.NOTSET)
    onnx.helper.set_model_props(q, {p.key: p.value for p in src.metadata_props})
    q.doc_string = src.doc_string
    return q.SerializeToString()


def _export_int8(model: torch.nn.Module, meta: dict[str, Any], doc: dict[str, Any], dest: Path, x: torch.Tensor,
                 data_dir: str | None, opset: int | None, max_drop: float, calibration_n: int) -> ExportResult:
    if calibration_n < 1:
        raise UsageError(f"--calibration-images must be ≥ 1, got {calibration_n}")
    try:
        calib, test_x, test_y, name = model_images(meta, data_dir, calibration_n)
    except UsageError as e:
        raise UsageError(f"onnx-int8 calibrates on the model's training images and is checked on its test set, "
                         f"which cannot be read here: {str(e).split(' (')[0]} (give --data-dir)") from None
    assert calib is not None
    # without the OOD output: quantized features would move its scores off the fp32 threshold
    doc = {**{k: v for k, v in doc.items() if k != "ood"},
           "quantization": {"method": "onnxruntime static QDQ, int8 weights per channel, uint8 activations",
                            "calibration_images": len(calib)}}
    fp32 = _write_onnx(model, x[:2], doc, opset)
    blob = quantize_int8(fp32, calib)
    q, ref = OnnxModel.from_bytes(blob), OnnxModel.from_bytes(fp32)
    return _judge_int8("onnx-int8", blob, q, ref, x, test_x, test_y, name, dest, max_drop)


def _judge_int8(fmt: str, blob: bytes, q: Any, ref: Any, x: torch.Tensor, test_x: Any, test_y: torch.Tensor,
                name: str, dest: Path, max_drop: float) -> ExportResult:
    """An int8 file's check, in the same runtime as its fp32 reference (`q`, `ref`: tensor -> logits):
    test accuracy at most `max_drop` points below fp32's, or it is kept as ``.failed`` and refused."""
    acc, ref_acc = _accuracy(q, test_x, test_y), _accuracy(ref, test_x, test_y)
    diff, same = _compare(torch.as_tensor(np.asarray(ref(x))), q(x))
    result = ExportResult(str(dest), fmt, f"{len(test_x)} {name} test images", len(test_x), diff, same,
                          len(blob), round(acc, 2), round(ref_acc, 2), max_drop)
    if not result.ok:
        atomic_write_bytes(str(dest) + ".failed", blob)
        raise UsageError(f"{dest}: int8 accuracy {acc:.2f} % on {result.checked_on} is {ref_acc - acc:.2f} points "
                         f"below fp32's {ref_acc:.2f} % (at most {max_drop:g} allowed, --max-drop); kept as "
                         f"{dest}.failed")
    atomic_write_bytes(dest, blob)
    return result


def _write_onnx(model: torch.nn.Module, example: torch.Tensor, doc: dict[str, Any], opset: int | None) -> bytes:
    import io

    import onnx

    buf = io.BytesIO()
    batch = torch.export.Dim("batch", min=1)
    # a model with an OOD detector (and "ood" in the document) gets a second output, the OOD score;
    # the threshold travels in the metadata ("ood": its document, with the quantiles for other --accept)
    with_ood = "ood" in doc and getattr(model, "ood", None) is not None
    net, outputs = (WithOOD(model), ["logits", "ood_score"]) if with_ood else (model, ["logits"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            prog = torch.onnx.export(net, (example,), dynamo=True, input_names=["image"], output_names=outputs,
                                     dynamic_shapes=({0: batch},), opset_version=opset, verbose=False)
        except Exception as e:  # an operation ONNX (or torch.export) cannot express: said in one line
            first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
            raise UsageError(f"model {doc.get('model')!r} cannot be exported to ONNX ({type(e).__name__}: "
                             f"{first[:200]}); nothing was written") from None
    prog.save(buf)  # type: ignore[union-attr]
    proto = onnx.load_from_string(buf.getvalue())
    pre = doc["preprocessing"]
    onnx.helper.set_model_props(proto, {
        "smallvision": json.dumps(doc),  # everything; the flat keys are for other tools
        "class_names": json.dumps(pre["class_names"]), "mean": json.dumps(pre["mean"]), "std": json.dumps(pre["std"]),
        "input_size": f"{pre['channels']}x{pre['height']}x{pre['width']}",
    })
    proto.doc_string = f"smallvision {doc['model']} trained on {doc['card']['dataset']}"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


class WithOOD(torch.nn.Module):
    """The graph an ONNX export with "none of these" holds: (logits as predict gives them, OOD score)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from smallvision.ood import scores

        logits, s = scores(self.model, x)
        return logits, s


def _write_torchscript(model: torch.nn.Module, example: torch.Tensor, doc: dict[str, Any], _opset: int | None) -> bytes:
    import io

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is in maintenance; tracing still works
        traced = torch.jit.trace(model, example, check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf, _extra_files={"smallvision.json": json.dumps(doc)})
    return buf.getvalue()


def _write_safetensors(model: torch.nn.Module, _example: torch.Tensor, doc: dict[str, Any], _opset: int | None) -> bytes:
    """A smallvision checkpoint (loadable by predict/serve/evaluate) whose metadata also carries
    flat string keys, so other safetensors readers see the classes and normalisation."""
    from smallvision.modelfile import checkpoint_bytes

    pre = doc["preprocessing"]
    meta = {k: v for k, v in doc.items() if k != "format"}
    flat = {"model": str(doc["model"]), "class_names": json.dumps(pre["class_names"]), "mean": json.dumps(pre["mean"]),
            "std": json.dumps(pre["std"]), "input_size": f"{pre['channels']}x{pre['height']}x{pre['width']}"}
    return checkpoint_bytes(model.state_dict(), meta, extra=flat)


def _quiet() -> Any:
    """The converters' and runtimes' own chatter kept off the user's screen: warnings, logging, the
    progress lines litert-torch prints and what their C++ writes to the process's stdout/stderr
    (file descriptors 1 and 2 point at a scratch file meanwhile; an error still raises)."""
    import contextlib
    import os
    import sys
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    stack.callback(logging.disable, logging.NOTSET)
    sink = stack.enter_context(tempfile.TemporaryFile())
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    os.dup2(sink.fileno(), 1)
    os.dup2(sink.fileno(), 2)

    def restore() -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        for fd, old in zip((1, 2), saved, strict=True):
            os.dup2(old, fd)
            os.close(old)

    stack.callback(restore)
    return stack


def _cannot_convert(fmt: str, doc: dict[str, Any], e: Exception) -> UsageError:
    """A layer the converter has no lowering for (fashion-fast's adaptive max pooling in LiteRT): one line."""
    first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
    return UsageError(f"model {doc.get('model')!r} cannot be converted to {fmt} ({type(e).__name__}: {first[:200]}); "
                      "nothing was written")


def _write_tflite(model: torch.nn.Module, example: torch.Tensor, doc: dict[str, Any], _opset: int | None) -> bytes:
    import tempfile

    with _quiet(), tempfile.TemporaryDirectory() as tmp:
        import litert_torch  # its import logs too

        try:
            litert_torch.convert(model, (example[:1],)).export(str(Path(tmp) / "m.tflite"))
        except Exception as e:
            raise _cannot_convert("TFLite", doc, e) from None
        return (Path(tmp) / "m.tflite").read_bytes()


def _write_executorch(model: torch.nn.Module, example: torch.Tensor, doc: dict[str, Any], _opset: int | None) -> bytes:
    with _quiet():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        try:
            program = torch.export.export(model, (example[:1],))
            return bytes(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
        except Exception as e:
            raise _cannot_convert("ExecuTorch", doc, e) from None


def _export_phone_int8(fmt: str, model: torch.nn.Module, meta: dict[str, Any], doc: dict[str, Any], dest: Path,
                       x: torch.Tensor, data_dir: str | None, max_drop: float, calibration_n: int) -> ExportResult:
    """int8 for phones, each by its own toolchain's usual route, checked as onnx-int8 is (test accuracy
    at most `max_drop` points below the fp32 file's, in the same runtime). ExecuTorch: PT2E static
    quantization with the XNNPACK quantizer (int8 weights per channel and int8 activations, ranges from
    `calibration_n` seeded training images), lowered to XNNPACK. LiteRT: the fp32 file quantized by
    ai-edge-quantizer's dynamic-range recipe (int8 weights, activations quantized on the fly; float in
    and out, no calibration)."""
    base = fmt.removesuffix("-int8")
    if calibration_n < 1:
        raise UsageError(f"--calibration-images must be ≥ 1, got {calibration_n}")
    try:
        calib, test_x, test_y, name = model_images(meta, data_dir, calibration_n if base == "executorch" else 0)
    except UsageError as e:
        raise UsageError(f"{fmt} is checked on the model's test set (and ExecuTorch calibrates on its training "
                         f"images), which cannot be read here: {str(e).split(' (')[0]} (give --data-dir)") from None
    fp32 = (_write_tflite if base == "tflite" else _write_executorch)(model, x[:1], doc, None)
    if base == "tflite":
        import tempfile

        with _quiet(), tempfile.TemporaryDirectory() as tmp:
            from ai_edge_quantizer import quantizer, recipe

            (Path(tmp) / "fp32.tflite").write_bytes(fp32)
            q = quantizer.Quantizer(str(Path(tmp) / "fp32.tflite"))
            q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
            q.quantize().export_model(str(Path(tmp) / "int8.tflite"), overwrite=True)
            blob = (Path(tmp) / "int8.tflite").read_bytes()
        method = "ai-edge-quantizer dynamic range: int8 weights, activations quantized on the fly"
    else:
        with _quiet():
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )
            from executorch.exir import to_edge_transform_and_lower
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            q8 = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
            graph = prepare_pt2e(torch.export.export(model, (x[:1],)).module(), q8)
            assert calib is not None
            with torch.no_grad():
                for i in range(len(calib)):
                    graph(calib[i : i + 1])
            graph = convert_pt2e(graph)
            lowered = to_edge_transform_and_lower(torch.export.export(graph, (x[:1],)), partitioner=[XnnpackPartitioner()])
            blob = bytes(lowered.to_executorch().buffer)
        method = f"PT2E static, XNNPACK quantizer: int8 weights per channel, int8 activations ({len(calib)} calibration images)"
    result = _judge_int8(fmt, blob, PhoneModel(blob, base), PhoneModel(fp32, base), x, test_x, test_y, name, dest,
                         max_drop)
    side = {**{k: v for k, v in doc.items() if k != "ood"}, "quantization": {"method": method}}
    atomic_write_bytes(str(dest) + ".json", json.dumps(side, indent=1).encode())
    return result


class PhoneModel:
    """A .tflite or .pte file run by its own Python runtime (ai-edge-litert's Interpreter, ExecuTorch's
    Runtime), callable like the model: (B, C, H, W) float tensor -> logits, one image per call inside."""

    def __init__(self, blob: bytes, fmt: str) -> None:
        import tempfile

        self.fmt = fmt
        if fmt == "tflite":
            with _quiet():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                from ai_edge_litert.interpreter import Interpreter

                self.it = Interpreter(model_content=blob)
                self.it.allocate_tensors()
            self.inp, self.out = self.it.get_input_details()[0]["index"], self.it.get_output_details()[0]["index"]
        else:
            self._tmp = tempfile.NamedTemporaryFile(suffix=".pte")  # the runtime loads a program from a file
            self._tmp.write(blob)
            self._tmp.flush()
            with _quiet():
                from executorch.runtime import Runtime

                self.method = Runtime.get().load_program(self._tmp.name).load_method("forward")

    def one(self, x: torch.Tensor) -> np.ndarray:
        if self.fmt == "tflite":
            self.it.set_tensor(self.inp, np.ascontiguousarray(x.numpy(), dtype=np.float32))
            self.it.invoke()
            return np.array(self.it.get_tensor(self.out))
        return self.method.execute([x.contiguous()])[0].numpy()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([self.one(x[i : i + 1].float()) for i in range(len(x))]))


def _check(fmt: str, blob: bytes, x: torch.Tensor, ref: torch.Tensor) -> tuple[float, bool]:
    """Run the exported bytes as a user would load them and compare the logits."""
    import io

    if fmt in PHONE:
        return _compare(ref, PhoneModel(blob, fmt)(x))

    if fmt == "onnx":
        return _compare(ref, OnnxModel.from_bytes(blob).run(x.numpy()))  # the logits; the OOD score in _check_ood
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.jit.load(io.BytesIO(blob), map_location="cpu")
        with torch.inference_mode():
            return _compare(ref, loaded(x))
    import tempfile

    from smallvision.modelfile import load_model

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "m.safetensors"
        p.write_bytes(blob)
        m, _ = load_model(p, "cpu")
        with torch.inference_mode():
            return _compare(ref, m.float()(x))


def _ood_diff(model: torch.nn.Module, blob: bytes, x: torch.Tensor) -> float:
    """The largest difference of the OOD scores between PyTorch and the ONNX graph, relative to
    the score's size where it is above 1 (a Mahalanobis distance is in the hundreds)."""
    from smallvision.ood import scores

    with torch.inference_mode():
        _, ref = scores(model, x)
    _, got = OnnxModel.from_bytes(blob).scores(x)
    assert ref is not None and got is not None
    return float(((ref.float() - got.float()).abs() / ref.float().abs().clamp_min(1)).max())


def describe(result: ExportResult) -> dict[str, Any]:
    return {**asdict(result), "ok": result.ok, "tolerance": TOLERANCE}
