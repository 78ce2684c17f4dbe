"""`smallvision benchmark RUN`: one trained model in every format it exports to, measured side by
side in one process (Ultralytics' `benchmark` mode): file size, accuracy on the model's real test
set, batch-1 median latency and batch-256 throughput.

    from smallvision.bench import benchmark
    rows = benchmark("runs/mnist-fast-.../")["rows"]   # one dict per format

Formats: PyTorch fp32 and bf16 (autocast), both in the run's memory format, TorchScript, ONNX fp32,
ONNX int8 (static QDQ, `export --format onnx-int8`) and OpenVINO when the `openvino` package is
installed (it reads the fp32 ONNX file). Every exported file is written by `smallvision export`,
so each passed its own check first. All on the CPU, with the same thread count for PyTorch and
onnxruntime.
"""

from __future__ import annotations

import contextlib
import importlib.util
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallvision.errors import UsageError
from smallvision.io import write_json
from smallvision.runfolder import RunFolder

FORMATS = ("pytorch-fp32", "pytorch-bf16", "torchscript", "onnx", "onnx-int8", "openvino")
# on request (--formats ...,web): the exported web page, timed in headless Chromium
OPTIONAL = ("tflite", "tflite-int8", "executorch", "executorch-int8", "web")  # phones (the phone extra), the page
BENCHMARK_JSON = "benchmark.json"


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: first-call allocations, onnxruntime's arena, oneDNN primitive caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _torch_runner(model: torch.nn.Module, amp: Any, channels_last: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), amp:
            return model(x).float()
    return run


def _openvino_runner(onnx_path: str, threads: int) -> Callable[[torch.Tensor], torch.Tensor]:
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
    compiled = core.compile_model(core.read_model(onnx_path), "CPU", config)

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(compiled(x.numpy())[0]))
    return run


def benchmark(checkpoint: str | Path, data_dir: str | None = None, formats: tuple[str, ...] | list[str] = FORMATS,
              images: int = 1024, batch: int = 256, latency_calls: int = 200, threads: int = 0,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every format of `checkpoint` (a run folder or a .safetensors file). Accuracy: the whole test
    set; throughput: the median of 3 passes over the first `images` test images in batches of
    `batch`; latency: the median of `latency_calls` single-image calls. Writes benchmark.json in
    the run folder and returns {"rows": [...], "images": ..., ...}."""
    from smallvision.config import from_dict
    from smallvision.export import FORMATS as SUFFIX
    from smallvision.export import _accuracy, export, model_images
    from smallvision.modelfile import OnnxModel, load_model, resolve

    unknown = [f for f in formats if f not in FORMATS + OPTIONAL]
    if unknown:
        raise UsageError(f"--formats: unknown {', '.join(unknown)} (choose from {', '.join(FORMATS + OPTIONAL)})")
    if batch < 1 or images < 1 or latency_calls < 1:
        raise UsageError("--batch and --images must be ≥ 1 (and latency_calls)")
    say = log or (lambda _m: None)
    ckpt = resolve(checkpoint)
    if threads:
        torch.set_num_threads(threads)
    threads = threads or torch.get_num_threads()
    model, meta = load_model(ckpt, "cpu")
    cfg = from_dict(meta.get("config", {}))
    try:
        _, test_x, test_y, name = model_images(meta, data_dir)
    except UsageError as e:
        raise UsageError(f"benchmark measures accuracy on the model's test set, which cannot be read here: "
                         f"{str(e).split(' (')[0]} (give --data-dir)") from None
    timed_x = test_x[:images]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        files: dict[str, Path] = {}

        def exported(fmt: str) -> Path:
            if fmt not in files:
                say(f"exporting {fmt} (and checking it)")
                files[fmt] = Path(export(ckpt, fmt, Path(tmp) / f"model{SUFFIX[fmt]}", data_dir).path)
            return files[fmt]

        for fmt in formats:
            runner: Callable[[torch.Tensor], torch.Tensor]
            note = ""
            try:
                if fmt not in ("pytorch-fp32", "pytorch-bf16", "openvino", "web"):
                    exported(fmt)
            except UsageError as e:  # a format whose own check failed (int8 losing accuracy): a row that says so
                rows.append({"format": fmt, "note": "not written: " + str(e).split(": ", 1)[-1]})
                continue
            if fmt in ("pytorch-fp32", "pytorch-bf16"):
                m = load_model(ckpt, "cpu")[0].float().eval()
                if cfg.channels_last:  # the memory format the run trained and tested in (NCHW depthwise
                    m = m.to(memory_format=torch.channels_last)  # convolutions are ~10× slower on a CPU)
                amp = torch.autocast("cpu", dtype=torch.bfloat16) if fmt == "pytorch-bf16" else contextlib.nullcontext()
                runner, size = _torch_runner(m, amp, cfg.channels_last), ckpt.stat().st_size
            elif fmt == "torchscript":
                path = exported(fmt)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ts = torch.jit.load(str(path), map_location="cpu")
                runner, size = _torch_runner(ts, contextlib.nullcontext(), False), path.stat().st_size
            elif fmt in ("onnx", "onnx-int8"):
                path = exported(fmt)
                runner, size = OnnxModel.load(path, threads), path.stat().st_size
            elif fmt.startswith(("tflite", "executorch")):
                from smallvision.export import PhoneModel

                path = exported(fmt)
                runner, size = PhoneModel(path.read_bytes(), fmt.removesuffix("-int8")), path.stat().st_size
                note = "its own runtime, one image a call"
            elif fmt == "web":
                rows.append(_web_row(ckpt, data_dir, Path(tmp) / "web", runner_accuracy=lambda p: _accuracy(
                    OnnxModel.load(p, threads), test_x, test_y, batch), say=say))
                continue
            else:  # openvino
                if importlib.util.find_spec("openvino") is None:
                    rows.append({"format": fmt, "note": "not installed (pip install openvino)"})
                    continue
                path = exported("onnx")
                runner, size, note = _openvino_runner(str(path), threads), path.stat().st_size, "from the fp32 ONNX file"
            say(f"measuring {fmt}")
            accuracy = _accuracy(runner, test_x, test_y, batch)
            passes = _median_seconds(lambda r=runner: [r(timed_x[i : i + batch]) for i in range(0, len(timed_x), batch)], 3)
            latency = _median_seconds(lambda r=runner: r(timed_x[:1]), latency_calls)
            rows.append({"format": fmt, "bytes": size, "accuracy": round(accuracy, 2),
                         "latency_ms": round(latency * 1000, 4), "images_per_s": round(len(timed_x) / passes, 1),
                         **({"note": note} if note else {})})
    measured = {r["format"]: r for r in rows if "accuracy" in r}
    doc = {"checkpoint": str(ckpt), "model": meta.get("model"), "dataset": name, "test_images": len(test_x),
           "timed_images": len(timed_x), "batch": batch, "latency_calls": latency_calls, "threads": threads,
           "rows": rows}
    if "onnx" in measured and "onnx-int8" in measured:  # what int8 buys, against fp32 in the same runtime
        a, b = measured["onnx"], measured["onnx-int8"]
        doc["int8"] = {"accuracy_delta": round(b["accuracy"] - a["accuracy"], 2),
                       "speedup_batch": round(b["images_per_s"] / a["images_per_s"], 2),
                       "speedup_latency": round(a["latency_ms"] / b["latency_ms"], 2),
                       "size_ratio": round(b["bytes"] / a["bytes"], 3)}
    if ckpt.parent.is_dir() and (ckpt.parent / RunFolder.CONFIG).is_file():  # a run folder: keep it beside the run
        write_json(ckpt.parent / BENCHMARK_JSON, doc)
        doc["saved"] = str(ckpt.parent / BENCHMARK_JSON)
    return doc


def _web_row(ckpt: Path, data_dir: str | None, folder: Path, runner_accuracy: Callable[[Path], float],
             say: Callable[[str], None]) -> dict[str, Any]:
    """The web folder (export --format web): its size, its model's test accuracy (the same ONNX graph),
    and batch-1 latency in headless Chromium (ONNX Runtime Web, WebAssembly)."""
    from smallvision.web import browser_timing, export_web

    say("exporting web (and checking it)")
    w = export_web(ckpt, folder, data_dir=data_dir)
    say("measuring web in headless Chromium")
    try:
        t = browser_timing(folder)
    except UsageError as e:
        return {"format": "web", "note": str(e)}
    return {"format": "web", "bytes": w.bytes, "accuracy": round(runner_accuracy(folder / "model.onnx"), 2),
            "latency_ms": t["latency_ms"], "ready_s": t["ready_s"], "first_answer_s": t["first_answer_s"],
            "note": f"the whole folder; headless Chromium, ONNX Runtime Web (WebAssembly, 1 thread); page ready "
                    f"{t['ready_s']:.2f} s, first answer {t['first_answer_s']:.2f} s"}


def markdown(doc: dict[str, Any]) -> list[str]:
    """The table as Markdown lines (the CLI prints it with rich; benchmarks/ commit these)."""
    lines = [f"{doc['model']} on {doc['dataset']}: accuracy on all {doc['test_images']} test images; batch-{doc['batch']} "
             f"throughput over {doc['timed_images']} of them (median of 3 passes); batch-1 latency the median of "
             f"{doc['latency_calls']} calls; {doc['threads']} threads", "",
             "| format | file MB | test accuracy % | batch-1 latency ms | images/s (batch) | note |",
             "|---|---:|---:|---:|---:|---|"]
    for r in doc["rows"]:
        if "accuracy" not in r:
            lines.append(f"| {r['format']} | | | | | {r.get('note', '')} |")
            continue
        rate = f"{r['images_per_s']:,.0f}" if "images_per_s" in r else ""
        lines.append(f"| {r['format']} | {r['bytes'] / 1e6:.3f} | {r['accuracy']:.2f} | {r['latency_ms']:.3f} | "
                     f"{rate} | {r.get('note', '')} |")
    if "int8" in doc:
        i = doc["int8"]
        lines += ["", f"int8 against ONNX fp32: accuracy {i['accuracy_delta']:+.2f} points, {i['speedup_batch']:.2f}× "
                      f"throughput, {i['speedup_latency']:.2f}× latency, {i['size_ratio']:.2f}× the file size"]
    return lines


__all__ = ["FORMATS", "OPTIONAL", "benchmark", "markdown"]
