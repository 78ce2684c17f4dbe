"""The served page in a real browser: Playwright drives Debian's Chromium (headless, --no-sandbox)
against `smallvision serve` started as a user starts it. It draws a 7 stroke by stroke on the canvas
and sees the guess, clears, uploads a PNG and sees its label. Screenshots go to artifacts/."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from smallvision.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"


def chromium() -> str:
    path = os.environ.get("SMALLVISION_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        if os.environ.get("SMALLVISION_SKIP_BROWSER") == "1":
            pytest.skip("SMALLVISION_SKIP_BROWSER=1 and no Chromium")
        pytest.fail("no Chromium: `make setup` installs Debian's (scripts/install-browser.sh), "
                    "or set SMALLVISION_CHROMIUM to a Chromium binary")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(mnist_run):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "smallvision", "serve", str(mnist_run), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"smallvision serve did not start: {proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)
    banner = proc.stdout.read() if proc.stdout else ""
    assert f"http://127.0.0.1:{port}/" in banner  # loopback unless told otherwise


def draw(page, strokes):
    box = page.locator("#canvas").bounding_box()
    for stroke in strokes:
        (x0, y0), rest = stroke[0], stroke[1:]
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=10)
        page.mouse.up()


def settled(page):
    page.wait_for_function("document.body.dataset.pending === '' && document.body.dataset.answered", timeout=10_000)
    return page.locator("#label").text_content()


@pytest.mark.slow  # ~14 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_draw_and_upload_in_chromium(served, tmp_path):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    data = load_dataset("mnist")
    i = int(np.flatnonzero(data.test_y.numpy() == 4)[0])
    upload = tmp_path / "four.png"
    Image.fromarray(255 - data.test_x[i, 0].numpy()).resize((140, 140)).save(upload)  # dark on light, 5× size
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 560})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        # offline, as on a machine with no internet: any request that leaves the server fails
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(served)
                   else (errors.append("off-server request: " + route.request.url), route.abort()))
        page.goto(served)
        page.wait_for_selector("body[data-ready='1']")
        assert "99" in page.locator("#card").text_content() or "test accuracy" in page.locator("#card").text_content()
        draw(page, [[(0.25, 0.22), (0.72, 0.22)], [(0.72, 0.22), (0.60, 0.50), (0.42, 0.82)]])  # a 7, two strokes
        assert settled(page) == "7"
        assert page.locator("#bars .bar").count() == 5
        page.screenshot(path=str(ARTIFACTS / "serve-draw.png"))
        page.click("#clear")
        assert page.locator("#label").text_content() == "–"
        page.set_input_files("#file", str(upload))
        page.wait_for_function("document.getElementById('label').textContent !== '–'", timeout=10_000)
        assert settled(page) == "4"
        assert page.locator("#preview").is_visible()
        page.screenshot(path=str(ARTIFACTS / "serve-upload.png"))
        # the heatmap toggle: /explain's picture of where the model looked, for the uploaded 4
        assert not page.locator("#heatmap").is_visible()
        page.check("#explain-toggle")
        page.wait_for_function("document.body.dataset.heatmap", timeout=20_000)
        assert page.locator("#heatmap").is_visible()
        assert page.evaluate("document.getElementById('heatmap').naturalWidth") == 224
        assert " for 4" in page.locator("#heatmap-note").text_content()
        page.set_viewport_size({"width": 1400, "height": 620})
        page.screenshot(path=str(ARTIFACTS / "serve-heatmap.png"), full_page=True)
        # the API docs render from files the server itself serves (fastapi-offline), no CDN
        page.goto(served + "/docs")
        page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
        paths = page.locator(".opblock-summary-path").all_text_contents()
        assert "/predict" in paths and "/explain" in paths
        page.screenshot(path=str(ARTIFACTS / "serve-docs.png"))
        browser.close()
    assert not errors, errors


@pytest.mark.slow  # the camera, paste and the web page's download: ~30 CPU-s (a web export inside)
def test_camera_paste_and_web_download(served, tmp_path):
    import zipfile

    from playwright.sync_api import sync_playwright

    from test_web_browser import fake_camera_video

    data = load_dataset("mnist")
    i = int(np.flatnonzero(data.test_y.numpy() == 4)[0])  # the digit the upload test reads
    four = tmp_path / "four.png"
    Image.fromarray(255 - data.test_x[i, 0].numpy()).resize((140, 140)).save(four)
    clip = fake_camera_video(four, tmp_path / "camera.y4m")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=[
            "--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}"])
        context = browser.new_context(permissions=["camera"], accept_downloads=True)
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(served)
                   else (errors.append("off-server request: " + route.request.url), route.abort()))
        page.goto(served)
        page.wait_for_selector("body[data-ready='1']")
        # paste: a PNG put on the clipboard event, as Ctrl+V in the page gives it
        page.evaluate("""async (b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "four.png", { type: "image/png" }));
            document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt }));
        }""", __import__("base64").b64encode(four.read_bytes()).decode())
        page.wait_for_function("Number(document.body.dataset.answered || 0) >= 1", timeout=20_000)
        assert settled(page) == "4"
        # the camera: frames sent while it runs, the digit it shows read
        page.click("#camera")
        page.wait_for_function("Number(document.body.dataset.frames || 0) >= 3", timeout=30_000)
        assert page.locator("#label").text_content() == "4"
        page.click("#camera")
        assert page.evaluate("document.body.dataset.camera") == "off"
        # the web page as a zip, built by the server
        assert page.locator("#web-download").is_visible()
        with page.expect_download(timeout=180_000) as d:
            page.click("#web-link")
        names = zipfile.ZipFile(d.value.path()).namelist()
        assert {"web/index.html", "web/model.onnx", "web/model.json", "web/ort-wasm-simd-threaded.wasm.gz"} <= set(names)
        browser.close()
    assert not errors, errors
