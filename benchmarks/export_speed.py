"""ONNX (onnxruntime) next to PyTorch: the same trained model, exported by `smallvision export` and
checked for parity, timed one image at a time (the median of 300 calls) and in batches of 1000
over the 10 000 test images (the median of 5 passes).

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/export_speed.py \
        --recipes mnist-fast,fashion-fast --out benchmarks/results/export_speed.md

Each recipe is trained first (its own full schedule, `--no-report`). PyTorch rows: fp32, and the
run's own precision (bf16 autocast + channels_last where the CPU runs bf16 natively, as `evaluate`
tests). onnxruntime: CPU provider, fp32, its default threads. All on the machine's cores.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import cpu_name, emit  # benchmarks/_common.py

from smallvision import api
from smallvision.config import from_dict
from smallvision.data import load_dataset
from smallvision.data.loader import as_model_input
from smallvision.engine.checkpoint import load_model
from smallvision.engine.device import autocast_for
from smallvision.export import OnnxModel, export


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def measure(run_dir: Path) -> list[tuple[str, str, float, float, str]]:
    model, meta = load_model(run_dir, "cpu")
    cfg = from_dict(meta["config"])
    data = load_dataset(cfg.dataset)
    x = as_model_input(data.test_x, meta["dataset"]["mean"], meta["dataset"]["std"], torch.device("cpu")).float()
    y = data.test_y
    with tempfile.TemporaryDirectory() as tmp:
        r = export(run_dir, "onnx", out=Path(tmp) / "m.onnx")
        onnx_model = OnnxModel.load(r.path)
    amp, _ = autocast_for(torch.device("cpu"), cfg.precision)
    fast = load_model(run_dir, "cpu")[0]
    if cfg.channels_last:
        fast = fast.to(memory_format=torch.channels_last)

    def torch_runner(m, ctx):
        def run(xb):
            with torch.inference_mode(), (ctx or contextlib.nullcontext()):
                return m(xb).float()
        return run

    runners = [("PyTorch fp32", torch_runner(model.float(), None)),
               (f"PyTorch as tested ({'bf16' if amp else 'fp32'})", torch_runner(fast, amp)),
               ("onnxruntime fp32", onnx_model)]
    rows = []
    one = x[:1]
    batches = [x[i : i + 1000] for i in range(0, len(x), 1000)]
    for name, run in runners:
        acc = float(torch.cat([run(b) for b in batches]).argmax(1).eq(y).float().mean() * 100)
        single = timed(lambda run=run: run(one), 300)
        full = timed(lambda run=run: [run(b) for b in batches], 5)
        rows.append((meta["model"], name, single * 1000, len(x) / full, f"{acc:.2f}"))
    rows.append((meta["model"], f"(export check: max abs logit diff {r.max_abs_diff:.1e} on {r.checked_on})",
                 float("nan"), float("nan"), ""))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="mnist-fast,fashion-fast")
    ap.add_argument("--out")
    args = ap.parse_args()
    lines = [f"Command: `SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/export_speed.py --recipes "
             f"{args.recipes}` ({torch.get_num_threads()} threads, {cpu_name()}, "
             f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')})", "",
             "| model | runtime | 1 image (ms, median of 300) | batches of 1000 (images/s) | test accuracy % |",
             "|---|---|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in args.recipes.split(","):
            res = api.train(recipe, runs_dir=tmp, report=False)
            for model, name, ms, ips, acc in measure(res.run_dir):
                if ms != ms:  # the parity note
                    lines.append(f"| {model} | {name} | | | |")
                else:
                    lines.append(f"| {model} ({recipe}) | {name} | {ms:.3f} | {ips:,.0f} | {acc} |")
    emit(lines, args.out)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
