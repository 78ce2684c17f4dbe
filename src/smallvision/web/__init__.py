"""A trained classifier as a static web page that runs offline in any browser.

    from smallvision.web import export_web
    r = export_web("runs/photo-transfer-.../")     # -> runs/photo-transfer-.../web/

The folder holds the page (``index.html``, ``app.js``, ``preprocess.js``), the model as ONNX
(checked against PyTorch as ``export --format onnx`` checks it), ``model.json`` (class names, the
preprocessing rule, the "none of these" threshold, the model card) and ONNX Runtime Web's script and
WebAssembly files themselves, copied from the pinned npm package `make setup` installs: nothing is
fetched at run time. Any static file server shows it (``python -m http.server -d FOLDER``).

The page's preprocessing is `smallvision predict`'s, written once in JavaScript
(``preprocess.js``) and checked against Python's, pixel for pixel, by the tests.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smallvision.errors import UsageError

ORT_WEB_VERSION = "1.31.1"  # web-runtime/package.json pins the same
# ONNX Runtime Web's files a page needs (the WebAssembly build, SIMD, no WebGPU): the script that
# defines `ort`, its Emscripten glue and the engine. The glue is an ES module (.mjs); copied as .js
# so that any static server sends it with a JavaScript type (some send .mjs as octet-stream).
# The engine (15 MB) is written gzipped (3.8 MB; the page inflates it with the browser's own
# DecompressionStream): the photo model's folder stays under 30 MB with its "none of these" detector.
ORT_FILES = {"ort.wasm.min.js": "ort.wasm.min.js", "ort-wasm-simd-threaded.mjs": "ort-wasm-simd-threaded.js",
             "ort-wasm-simd-threaded.wasm": "ort-wasm-simd-threaded.wasm.gz"}
PAGE_FILES = ("index.html", "app.js", "preprocess.js")
PAGE_DIR = Path(__file__).parent
WEB_FORMAT = "smallvision-web"


@dataclass
class WebExport:
    path: str  # the folder
    bytes: int  # all of it
    model_bytes: int
    int8: bool
    check: dict[str, Any]  # the ONNX file's parity check (export.describe)
    files: list[str]


def ort_web_dir() -> Path:
    """ONNX Runtime Web's ``dist`` folder: $SMALLVISION_ORT_WEB, else ``web-runtime/node_modules``
    of this checkout (what `make setup` installs), else of the current folder."""
    rel = Path("web-runtime") / "node_modules" / "onnxruntime-web" / "dist"
    if os.environ.get("SMALLVISION_ORT_WEB"):  # given: the only place looked at
        candidates = [Path(os.environ["SMALLVISION_ORT_WEB"])]
    else:
        candidates = [parent / rel for parent in Path(__file__).resolve().parents] + [Path.cwd() / rel]
    for d in candidates:
        if all((d / f).is_file() for f in ORT_FILES):
            version = _package_version(d)
            if version != ORT_WEB_VERSION:
                raise UsageError(f"{d}: ONNX Runtime Web {version} found, {ORT_WEB_VERSION} expected (run `make setup` "
                                 "or `npm ci --prefix web-runtime`)")
            return d
    raise UsageError(f"--format web copies ONNX Runtime Web {ORT_WEB_VERSION} into the folder, and it is not installed "
                     "here: run `make setup` (or `npm ci --prefix web-runtime` in the smallvision checkout), or set "
                     "SMALLVISION_ORT_WEB to its dist folder")


def _package_version(dist: Path) -> str:
    try:
        return str(json.loads((dist.parent / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def page_rule(meta: dict[str, Any]) -> dict[str, Any]:
    """The preprocessing as the page's script reads it: `modelfile.preprocessing` (the words, for
    people) plus the switches predict decides from the data set (digit-style centring, inverting
    dark-on-light input) and the JPEG draft-mode side."""
    from smallvision.data.info import DatasetInfo
    from smallvision.modelfile import preprocessing

    info = DatasetInfo.from_dict(meta["dataset"])
    c, h, w = info.input_shape
    digit = c == 1 and h == w and info.is_digit_style()
    return {**preprocessing(meta), "dark_background": c == 1 and info.mean[0] < 0.5, "digit_style": digit,
            # predict decodes a JPEG at 1/2, 1/4 or 1/8 while both sides stay at least this (not digits)
            "jpeg_draft_side": None if digit else min(h, w)}


def model_document(meta: dict[str, Any], card: dict[str, Any], with_ood: bool) -> dict[str, Any]:
    """model.json: what the page needs besides the ONNX graph."""
    rule = page_rule(meta)
    doc: dict[str, Any] = {
        "format": WEB_FORMAT, "format_version": 1, "onnx_runtime_web": ORT_WEB_VERSION,
        "class_names": rule["class_names"], "preprocessing": rule, "card": card,
        "outputs": "logits" + (", ood_score" if with_ood else ""),
        # the probabilities predict gives: softmax of the logits (temperature-scaled inside the graph
        # when the run calibrated), or one sigmoid per class for a multi-label model
        "probabilities": "sigmoid" if meta["dataset"].get("multilabel") else "softmax",
    }
    if meta["dataset"].get("multilabel"):
        from smallvision.multilabel import thresholds_of

        doc["thresholds"] = thresholds_of(meta)
    if with_ood:
        ood = meta["ood"]
        doc["ood"] = {"threshold": float(ood["threshold"]), "detector": ood.get("detector"),
                      "accept": ood.get("accept"), "label": "none of these"}
    return doc


def _readme(doc: dict[str, Any], files: dict[str, int]) -> str:
    card, rule = doc["card"], doc["preprocessing"]
    acc = card.get("test_accuracy")
    lines = [
        f"# {card.get('model')} on {card.get('dataset')}: a web page that runs the model in the browser",
        "",
        f"Exported by smallvision from run `{card.get('run')}`"
        + (f" (test accuracy {acc:.2f} %)" if isinstance(acc, (int, float)) else "") + ".",
        "",
        "Open it through any static file server, for example `python -m http.server -d THIS_FOLDER 8000` and then",
        "http://localhost:8000/ (browsers do not run WebAssembly from `file://`). Nothing is fetched from the",
        "network: the model, the page and ONNX Runtime Web are all here. Photos you choose, paste, draw or show",
        "to the camera never leave the browser.",
        "",
        f"## Files ({sum(files.values()) / 1e6:.1f} MB)",
        "",
        "| file | bytes | what |",
        "|---|---:|---|",
    ]
    what = {"index.html": "the page", "app.js": "inputs, inference and the answer",
            "preprocess.js": "the model's preprocessing (the same pixels as `smallvision predict`)",
            "model.onnx": "the model (" + doc["outputs"] + ")", "model.json": "class names, preprocessing, threshold, card",
            "ort.wasm.min.js": f"ONNX Runtime Web {ORT_WEB_VERSION} (npm `onnxruntime-web`, MIT licence), its `ort.wasm.min.js`",
            "ort-wasm-simd-threaded.js": f"ONNX Runtime Web {ORT_WEB_VERSION}: `ort-wasm-simd-threaded.mjs`, renamed",
            "ort-wasm-simd-threaded.wasm.gz": f"ONNX Runtime Web {ORT_WEB_VERSION}: the WebAssembly engine "
                                              "`ort-wasm-simd-threaded.wasm`, gzipped (the page inflates it)",
            "README.md": "this file"}
    lines += [f"| `{f}` | {n} | {what.get(f, '')} |" for f, n in files.items()]
    lines += [
        "",
        "## Preprocessing",
        "",
        f"- input: {rule['input']}, {rule['channels']} × {rule['height']} × {rule['width']}, "
        f"mean {rule['mean']}, std {rule['std']}",
        f"- resize and crop: {rule['center']}; invert: {rule['invert']}",
        "- EXIF orientation is applied by the browser, colour profiles are not (as Pillow does not)",
        "",
        "One difference from `smallvision predict`: a JPEG at least twice the model's input on both sides is",
        "decoded by Pillow at 1/2, 1/4 or 1/8 of its size (JPEG draft mode); the page decodes it whole and",
        "shrinks it to that size with the browser's own resize first, so its probabilities on such photos are",
        "close to predict's, not equal. On other photos they agree to about 1e-5.",
    ]
    if "ood" in doc:
        lines += ["", f"An image whose OOD score ({doc['ood']['detector']}) is above {doc['ood']['threshold']:.6g} is "
                  "answered \"none of these\", as `smallvision predict` answers it."]
    return "\n".join(lines) + "\n"


def export_web(checkpoint: str | Path, out: str | Path | None = None, *, force: bool = False, int8: bool = False,
               data_dir: str | None = None, check_n: int = 256, opset: int | None = None) -> WebExport:
    """Write the web folder for `checkpoint` (a run folder or .safetensors file) to `out` (default:
    ``web/`` in the run folder). Refuses an existing non-empty `out` unless `force`; builds beside it
    and renames, so a failed export leaves nothing half written. ``int8``: the model as
    ``export --format onnx-int8`` writes it (checked by test accuracy; without "none of these")."""
    from smallvision.export import describe, export
    from smallvision.modelfile import load_model, model_card, resolve

    ckpt = resolve(checkpoint)
    dest = Path(out) if out else ckpt.parent / "web"
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest}: exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise UsageError(f"{dest}: the folder exists and is not empty (give --force to replace it, or another --out)")
    if not dest.parent.is_dir():
        raise UsageError(f"{dest.parent}: no such folder")
    ort_dir = ort_web_dir()  # before any work: a missing runtime is said at once
    _, meta = load_model(ckpt, "cpu")
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        r = export(ckpt, "onnx-int8" if int8 else "onnx", stage / "model.onnx", data_dir, check_n, opset)
        with_ood = not int8 and isinstance(meta.get("ood"), dict)
        doc = model_document(meta, model_card(meta, ckpt), with_ood)
        (stage / "model.json").write_text(json.dumps(doc, indent=1))
        for name in PAGE_FILES:
            shutil.copyfile(PAGE_DIR / name, stage / name)
        for src, name in ORT_FILES.items():
            if name.endswith(".gz"):
                (stage / name).write_bytes(gzip.compress((ort_dir / src).read_bytes(), 9, mtime=0))
            else:
                shutil.copyfile(ort_dir / src, stage / name)
        files = {p.name: p.stat().st_size for p in sorted(stage.iterdir())}
        files["README.md"] = 0
        (stage / "README.md").write_text(_readme(doc, files))
        files["README.md"] = (stage / "README.md").stat().st_size
        if dest.exists():
            shutil.rmtree(dest)
        stage.rename(dest)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return WebExport(str(dest), sum(files.values()), files["model.onnx"], int8, describe(r), list(files))


@contextlib.contextmanager
def static_server(folder: str | Path) -> Iterator[str]:
    """`python -m http.server` on `folder` at a free local port, as a plain user would serve the page;
    yields its URL once it answers, and stops it on exit."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "http.server", "-d", str(folder), "--bind", "127.0.0.1", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait()


def browser_timing(folder: str | Path, calls: int = 50, chromium: str | None = None) -> dict[str, Any]:
    """The web folder in headless Chromium (Playwright; `chromium` or $SMALLVISION_CHROMIUM or the one on
    PATH), served by a static server on this machine: seconds from opening the page to its first
    answer (a gray picture of the model's size chosen as a file), and the median of `calls` model
    calls (WebAssembly, one thread: a static server gives no cross-origin isolation)."""
    import time

    from PIL import Image

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise UsageError("the browser's timing needs Playwright (the dev extra: make setup)") from None
    browser_path = chromium or os.environ.get("SMALLVISION_CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    if not browser_path:
        raise UsageError("the browser's timing needs Chromium (sudo apt-get install chromium, or SMALLVISION_CHROMIUM)")
    doc = json.loads((Path(folder) / "model.json").read_text())
    rule = doc["preprocessing"]
    with static_server(folder) as url, tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        picture = Path(tmp) / "gray.png"
        Image.new("RGB", (rule["width"], rule["height"]), (128, 128, 128)).save(picture)
        browser = p.chromium.launch(executable_path=browser_path, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        t0 = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        ready = time.perf_counter() - t0
        page.set_input_files("#file", str(picture))
        page.wait_for_function("Number(document.body.dataset.answered) >= 1", timeout=120_000)
        first = time.perf_counter() - t0
        latency = float(page.evaluate(f"window.smallvision.latency({int(calls)})"))
        version = page.evaluate("navigator.userAgent")
        browser.close()
    return {"ready_s": round(ready, 3), "first_answer_s": round(first, 3), "latency_ms": round(latency, 3),
            "browser": version}
