"""`export --format web`: the page's preprocessing (JavaScript, run here in Node) gives `predict`'s
pixels exactly; the folder is complete and refuses what it must. The page itself, in headless
Chromium with the network blocked, is in tests/test_web_browser.py (slow)."""

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli, run_main
from smallvision.data.info import DatasetInfo
from smallvision.predict import Predictor
from smallvision.web import ORT_WEB_VERSION, PAGE_DIR, ort_web_dir, page_rule

PHOTOS = Path(os.environ.get("SMALLVISION_DATA", "")) / "photos"

RUN_JS = """
const SV = require(process.argv[1]);
const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(cases.map((c) => {
  const x = SV.preprocess(new Uint8ClampedArray(Buffer.from(c.rgba, 'base64')), c.w, c.h, c.rule);
  return Buffer.from(x.buffer).toString('base64');
})));
"""


def node() -> str:
    path = shutil.which("node") or shutil.which("nodejs")
    if not path:
        if os.environ.get("SMALLVISION_SKIP_BROWSER") == "1":
            pytest.skip("SMALLVISION_SKIP_BROWSER=1 and no Node.js")
        pytest.fail("no Node.js (it comes with npm, which `make setup` installs: sudo apt-get install npm)")
    return path


def predictor(name, c, h, w, mean, std, digit=None):
    info = DatasetInfo(name, 2, c, h, w, tuple(mean), tuple(std), ("a", "b"), digit_style=digit)
    return Predictor(torch.nn.Identity(), {"dataset": info.to_dict()})


MODELS = {  # the kinds of input rule a checkpoint can carry
    "photo-224": predictor("folder:x", 3, 224, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "photo-64": predictor("folder:x", 3, 64, 64, (0.5,) * 3, (0.25,) * 3),
    "wide-rgb": predictor("csv:x", 3, 48, 64, (0.5,) * 3, (0.25,) * 3),  # not square: a bicubic resize last
    "mnist": predictor("mnist", 1, 28, 28, (0.1307,), (0.3081,), digit=True),
    "gray-32": predictor("fashion-mnist", 1, 32, 32, (0.29,), (0.35,), digit=False),
    "light-digits": predictor("x", 1, 28, 28, (0.8,), (0.3,), digit=True),  # dark ink on light: never inverted
}


def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    out = []
    for w, h in ((329, 671), (671, 329), (224, 224), (500, 375), (31, 97), (700, 45), (64, 48)):
        ramp = np.linspace(0, 170, w)[None, :, None] + np.linspace(0, 60, h)[:, None, None]
        out.append(Image.fromarray((rng.integers(0, 80, (h, w, 3)) + ramp).clip(0, 255).astype(np.uint8)))
    digit = np.zeros((140, 120), np.uint8)
    digit[30:110, 50:66] = 230  # a light stroke on dark, off centre
    out += [Image.fromarray(digit).convert("RGB"), Image.fromarray(255 - digit).convert("RGB")]  # and dark on light
    for folder in sorted(PHOTOS.glob("*"))[:7]:  # one real photo of each set there is
        first = next((f for f in sorted(folder.rglob("*")) if f.suffix.lower() in (".jpg", ".jpeg", ".png")), None)
        if first is not None:
            out.append(Image.open(first).convert("RGB"))
    return out


def test_the_pages_preprocessing_gives_predicts_pixels_exactly():
    """preprocess.js against Predictor.preprocess on the same decoded pixels: every rule (photo,
    non-square, digit-style with and without inverting, gray), tall, wide, tiny and real photos."""
    cases, expected = [], []
    for im in images():
        rgba = np.asarray(im.convert("RGBA"))
        for p in MODELS.values():
            rule = page_rule(p.meta)
            cases.append({"w": im.width, "h": im.height, "rgba": base64.b64encode(rgba.tobytes()).decode(), "rule": rule})
            expected.append(p.preprocess(im).numpy().ravel())
    r = subprocess.run([node(), "-e", RUN_JS, str(PAGE_DIR / "preprocess.js")], input=json.dumps(cases),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = [np.frombuffer(base64.b64decode(s), np.float32) for s in json.loads(r.stdout)]
    assert len(got) == len(expected) >= 9 * len(MODELS)
    for case, g, e in zip(cases, got, expected, strict=True):
        assert g.shape == e.shape
        assert np.array_equal(g, e), (case["w"], case["h"], case["rule"]["channels"], float(np.abs(g - e).max()))


def test_rounding_and_draft_rules_are_pythons(tmp_path):
    """Python's round-half-to-even, and the JPEG draft reduction Pillow itself picks."""
    sizes = [(1800, 1000), (500, 375), (1000, 448), (1792, 3000), (447, 2000), (900, 1800), (4000, 1800)]
    pillow = []
    for w, h in sizes:
        Image.new("RGB", (w, h), (90, 120, 30)).save(tmp_path / "p.jpg", quality=50)
        with Image.open(tmp_path / "p.jpg") as im:
            im.draft("RGB", (224, 224))
            pillow.append(round(w / im.size[0]))
    script = """const SV = require(process.argv[1]);
      console.log(JSON.stringify([[0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, 3.5001].map(SV.roundHalfEven),
        JSON.parse(process.argv[2]).map(([w, h]) => SV.draftScale(w, h, 224))]));"""
    r = subprocess.run([node(), "-e", script, str(PAGE_DIR / "preprocess.js"), json.dumps(sizes)], capture_output=True,
                       text=True, timeout=60)
    rounds, drafts = json.loads(r.stdout)
    assert rounds == [round(v) for v in (0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, 3.5001)]
    assert drafts == pillow and set(pillow) == {1, 2, 4, 8}


@pytest.mark.slow  # an ONNX export and its check: ~25 CPU-s (CI runs make test-slow)
def test_the_web_folder_is_complete_and_refuses_to_overwrite(mnist_run, tmp_path):
    out = tmp_path / "web"
    r = run_cli("export", str(mnist_run), "--format", "web", "--out", str(out), "--check-images", "64", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.splitlines()[-1])
    files = {p.name: p.stat().st_size for p in out.iterdir()}
    assert set(files) == {"index.html", "app.js", "preprocess.js", "model.onnx", "model.json", "README.md",
                          "ort.wasm.min.js", "ort-wasm-simd-threaded.js", "ort-wasm-simd-threaded.wasm.gz"}
    assert doc["bytes"] == sum(files.values()) < 30e6 and doc["check"]["max_abs_diff"] <= 1e-4
    model = json.loads((out / "model.json").read_text())
    assert model["class_names"] == [str(i) for i in range(10)] and model["onnx_runtime_web"] == ORT_WEB_VERSION
    assert model["preprocessing"]["digit_style"] and "threshold" in model["ood"]
    readme = (out / "README.md").read_text()
    assert f"ONNX Runtime Web {ORT_WEB_VERSION}" in readme and "ort-wasm-simd-threaded.wasm.gz" in readme
    import gzip

    engine = gzip.decompress((out / "ort-wasm-simd-threaded.wasm.gz").read_bytes())
    assert engine[:4] == b"\0asm" and engine == (ort_web_dir() / "ort-wasm-simd-threaded.wasm").read_bytes()
    # an existing, non-empty folder is refused in one line (exit 2) and left as it was
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = run_main("export", str(mnist_run), "--format", "web", "--out", str(out))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "not empty" in r.stderr and "--force" in r.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_missing_web_runtime_is_one_line_and_writes_nothing(mnist_run, tmp_path, monkeypatch):
    monkeypatch.setenv("SMALLVISION_ORT_WEB", str(tmp_path / "nowhere"))
    out = tmp_path / "web"
    r = run_main("export", str(mnist_run), "--format", "web", "--out", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "ONNX Runtime Web" in r.stderr and "make setup" in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".web-*"))


def test_an_existing_folder_is_refused_before_any_work(mnist_run, tmp_path):
    out = tmp_path / "web"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    r = run_main("export", str(mnist_run), "--format", "web", "--out", str(out))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "not empty" in r.stderr and "--force" in r.stderr
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "keep me"


def test_a_model_onnx_cannot_express_is_one_line():
    """What `--format web` (and `--format onnx`) says for a graph the exporter refuses."""
    from smallvision.errors import UsageError
    from smallvision.export import _write_onnx

    class DataDependent(torch.nn.Module):
        def forward(self, x):
            return x[:, :, : int(x.sum().item() > 0) + 1].flatten(1)  # a shape from the data

    with pytest.raises(UsageError, match="cannot be exported to ONNX") as e:
        _write_onnx(DataDependent(), torch.ones(2, 1, 4, 4), {"model": "odd", "preprocessing": {}}, None)
    assert "\n" not in str(e.value) and "nothing was written" in str(e.value)
