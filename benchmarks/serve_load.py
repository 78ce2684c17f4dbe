"""Load test of `smallvision serve` on loopback: N requests from C concurrent clients, each a real
MNIST test digit as a PNG upload; every answer must be 200 and carry the label the model gives the
same image in-process. Latency is measured by the clients (send to full answer).

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/serve_load.py --requests 500 --clients 50 --threads 1,2 \
        --out benchmarks/results/serve_load.md

The model is a fresh mnist-fast run (or --run FOLDER); it is served from its checkpoint (PyTorch)
and from its exported ONNX file, each by a real `smallvision serve` process. The clients are
threads of this process, on the same cores as the server.
"""

from __future__ import annotations

import argparse
import io
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from smallvision import api
from smallvision.data import load_dataset
from smallvision.export import export
from smallvision.predict import Predictor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, emit  # noqa: E402


def start(target: str, port: int, threads: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "smallvision", "serve", target, "--port", str(port),
                             "--threads", str(threads)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start: {proc.stderr.read() if proc.stderr else ''}")


def load(url: str, files: list[bytes], expected: list[str], clients: int) -> dict:
    jobs: queue.Queue[int] = queue.Queue()
    for i in range(len(files)):
        jobs.put(i)
    latencies: list[float] = []
    wrong: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while True:
                try:
                    i = jobs.get_nowait()
                except queue.Empty:
                    return
                t0 = time.perf_counter()
                try:
                    r = c.post("/predict", files={"file": (f"{i}.png", files[i], "image/png")})
                    ok = r.status_code == 200 and r.json()["label"] == expected[i]
                    why = f"{i}: {r.status_code} {r.text[:80]}"
                except httpx.HTTPError as e:
                    ok, why = False, f"{i}: {type(e).__name__}"
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if not ok:
                        wrong.append(why)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = sorted(1000 * x for x in latencies)
    return {"n": len(ms), "correct": len(ms) - len(wrong), "wrong": wrong[:5], "median": statistics.median(ms),
            "p99": ms[min(len(ms) - 1, int(np.ceil(0.99 * len(ms))) - 1)], "max": ms[-1], "rps": len(ms) / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--run", help="a trained MNIST run folder (default: train mnist-fast now)")
    ap.add_argument("--port", type=int, default=8731)
    ap.add_argument("--threads", default="1,2", help="serve --threads values to compare")
    ap.add_argument("--repeats", type=int, default=3, help="load rounds per server; the table gives medians")
    ap.add_argument("--out")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else api.train("mnist-fast", runs_dir=tmp, report=False).run_dir
        onnx_file = export(run, "onnx", out=Path(tmp) / "model.onnx").path
        data = load_dataset("mnist")
        idx = np.arange(args.requests) % len(data.test_y)
        images = [Image.fromarray(data.test_x[i, 0].numpy()) for i in idx]
        files = []
        for im in images:
            buf = io.BytesIO()
            im.save(buf, "PNG")
            files.append(buf.getvalue())
        expected = [p["label"] for p in Predictor.from_checkpoint(run).predict(images)]
        truth = sum(e == str(int(data.test_y[i])) for e, i in zip(expected, idx, strict=True))
        rows = []
        for threads in map(int, args.threads.split(",")):
            for name, target in (("checkpoint (PyTorch)", str(run)), ("exported ONNX (onnxruntime)", onnx_file)):
                proc = start(target, args.port, threads)
                try:
                    runs = [load(f"http://127.0.0.1:{args.port}", files, expected, args.clients)
                            for _ in range(args.repeats)]
                finally:
                    proc.terminate()
                    proc.wait(10)
                r = {k: statistics.median(x[k] for x in runs) for k in ("median", "p99", "max", "rps")}
                r |= {"n": sum(x["n"] for x in runs), "correct": sum(x["correct"] for x in runs),
                      "wrong": [w for x in runs for w in x["wrong"]][:5]}
                rows.append((f"{name}, --threads {threads}", r))
    lines = [f"Command: `SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/serve_load.py --requests "
             f"{args.requests} --clients {args.clients} --threads {args.threads}` (2 cores: {cpu_name()}; server and clients on the same cores; "
             f"{time.strftime('%Y-%m-%d')})", "",
             f"Each request uploads one MNIST test digit (PNG). 'answered correctly' = HTTP 200 with the label the "
             f"model gives that image in-process; {truth}/{args.requests} of those labels are also the true digit.", "",
             f"Each server gets {args.repeats} rounds of {args.requests} requests; latency and requests/s are the medians "
             "of the rounds, 'answered correctly' counts all rounds.", "",
             "| served from | requests | clients | answered correctly | median ms | p99 ms | max ms | requests/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['n']} | {args.clients} | {r['correct']}/{r['n']} | {r['median']:.1f} | "
                     f"{r['p99']:.1f} | {r['max']:.1f} | {r['rps']:.0f} |")
        if r["wrong"]:
            lines.append(f"|  first failures: {'; '.join(r['wrong'])} |")
    emit(lines, args.out)
    if any(r["correct"] != r["n"] for _, r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
