"""Inference speed of a trained checkpoint: batched throughput on the test set, the latency of
`predict` for one image file after the model is loaded (the median of 100 calls), plus two
start-up figures: MNIST's gzip IDX files to tensors, and `smallvision --help` (median of 5).

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/inference.py runs/<mnist-fast run>
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from smallvision.data import load_dataset
from smallvision.data.loader import normalize
from smallvision.predict import Predictor


def main() -> None:
    run = sys.argv[1]
    p = Predictor.from_checkpoint(run)
    data = load_dataset(p.meta["config"]["dataset"])
    x = normalize(data.test_x, p.info.mean, p.info.std)
    rows = []
    for label, ctx, cl in (("fp32", None, False), ("bf16 autocast + channels_last", torch.bfloat16, True)):
        model = p.model.to(memory_format=torch.channels_last) if cl else p.model
        xs = x.contiguous(memory_format=torch.channels_last) if cl else x
        with torch.inference_mode():
            for _ in range(2):  # warm-up, then the median of 5 passes over the 10 000 test images
                times = []
                for _ in range(5):
                    t = time.perf_counter()
                    for i in range(0, len(xs), 1000):
                        with torch.autocast("cpu", dtype=ctx, enabled=ctx is not None):
                            model(xs[i : i + 1000])
                    times.append(time.perf_counter() - t)
        rows.append(f"| batched ({label}, batch 1000) | {len(xs) / statistics.median(times):,.0f} images/s |")
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "digit.png"
        Image.fromarray(255 - data.test_x[0, 0].numpy()).resize((200, 200)).save(f)  # dark on light, 200 px
        p.predict([f])
        lat = []
        for _ in range(100):
            t = time.perf_counter()
            p.predict([f])
            lat.append(time.perf_counter() - t)
    rows.append(f"| `Predictor.predict` of one 200×200 PNG (decode, invert, centre, forward) | "
                f"{1000 * statistics.median(lat):.2f} ms (median of 100) |")
    import subprocess

    from smallvision.data.idx import IDX_FILES, read_idx_pair
    from smallvision.data.sources import find_files

    files, _ = find_files("mnist", IDX_FILES, None)
    if files:
        t = time.perf_counter()
        read_idx_pair(files[IDX_FILES[0]], files[IDX_FILES[1]])
        read_idx_pair(files[IDX_FILES[2]], files[IDX_FILES[3]])
        rows.append(f"| MNIST's four gzip IDX files to uint8 tensors | {time.perf_counter() - t:.2f} s |")
    starts = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "smallvision", "--help"], capture_output=True, check=True)
        starts.append(time.perf_counter() - t)
    rows.append(f"| `python -m smallvision --help` (whole process) | {statistics.median(starts):.2f} s |")
    print("| what | speed |\n|---|---:|\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
