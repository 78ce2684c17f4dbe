"""The exported web folder in headless Chromium, served by a plain static server (`python -m
http.server`) with every request outside it refused and counted: the page's answers equal `smallvision
predict`'s (top class, probabilities within 1e-3) on real cats-vs-dogs photos and MNIST test digits;
the camera (Chromium's fake device playing a known photo), a non-image file, a 50-MP photo and a
refused camera each get an answer or a message, never a frozen tab. Screenshots go to artifacts/."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smallvision.predict import Predictor
from smallvision.web import export_web, static_server
from test_serve_browser import ARTIFACTS, chromium, draw

pytestmark = pytest.mark.slow  # a photo run, two exports, Chromium: ~2 CPU-min (CI runs make test-slow)

PHOTOS = Path(os.environ.get("SMALLVISION_DATA", "")) / "photos" / "cats-vs-dogs-3000"
needs_photos = pytest.mark.skipif(not PHOTOS.is_dir(), reason="real photos not found (SMALLVISION_DATA/photos)")


class Page:
    """A Chromium page on a web folder: requests that leave the static server are refused and kept."""

    def __init__(self, browser, url, **context):
        self.url, self.errors, self.off_server = url, [], []
        self.context = browser.new_context(viewport={"width": 1200, "height": 800}, **context)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url)
                        else (self.off_server.append(route.request.url), route.abort()))

    def open(self) -> float:
        t0 = time.monotonic()
        self.page.goto(self.url)
        self.page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        return time.monotonic() - t0

    def upload(self, files) -> list[dict]:
        before = int(self.page.evaluate("document.body.dataset.answered"))
        self.page.set_input_files("#file", [str(f) for f in files])
        self.page.wait_for_function(f"Number(document.body.dataset.answered) >= {before + len(files)}",
                                    timeout=300_000)
        return self.page.evaluate("""Array.from(document.querySelectorAll('.result')).map(e => ({
            name: e.dataset.name, top1: e.dataset.top1, label: e.dataset.label, error: e.dataset.error,
            probs: e.dataset.probs ? JSON.parse(e.dataset.probs) : null}))""")


def agree(page_results, predictor: Predictor, files) -> tuple[int, float]:
    """(files whose top class is predict's, the largest probability difference)."""
    mine = {r["name"]: r for r in page_results}
    same, worst = 0, 0.0
    for f, ref in zip(files, predictor.predict([str(f) for f in files], top_k=len(predictor.classes)), strict=True):
        got = mine[Path(f).name]
        assert got["probs"] is not None, got
        p = np.zeros(len(predictor.classes))
        for label, q in ref["top_k"]:
            p[predictor.classes.index(label)] = q
        same += ref["top_k"][0][0] == got["top1"]
        worst = max(worst, float(np.abs(p - np.asarray(got["probs"])).max()))
        assert got["label"] == ref["label"]  # "none of these" where predict says it
    return same, worst


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def cats_dogs_run(tmp_path_factory):
    """photo-transfer-fast on 150 + 150 real photos; 60 + 60 others as its test split."""
    from smallvision import api

    if not PHOTOS.is_dir():
        pytest.skip("real photos not found (SMALLVISION_DATA/photos)")
    root = tmp_path_factory.mktemp("web") / "cats-dogs"
    for split, lo, hi in (("train", 0, 150), ("test", 150, 210)):
        for c in ("cats", "dogs"):
            (root / split / c).mkdir(parents=True)
            for f in sorted((PHOTOS / "train" / c).iterdir())[lo:hi]:
                (root / split / c / f.name).symlink_to(f.resolve())  # SMALLVISION_DATA may be relative
    r = api.train("photo-transfer-fast", dataset=f"folder:{root}", runs_dir=root.parent / "runs", report=False)
    return Path(r.run_dir), sorted((root / "test").rglob("*.jpg"))


@needs_photos
def test_photo_page_answers_as_predict_on_real_photos_offline(browser, cats_dogs_run, tmp_path):
    run, photos = cats_dogs_run
    w = export_web(run, tmp_path / "web")
    assert w.bytes <= 30e6, w.bytes
    ARTIFACTS.mkdir(exist_ok=True)
    with static_server(w.path) as url:
        b = browser.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
        page = Page(b, url)
        load = page.open()
        results = page.upload(photos)
        same, worst = agree(results, Predictor.from_checkpoint(run, device="cpu"), photos)
        assert len(photos) >= 50 and same == len(photos) and worst <= 1e-3, (same, len(photos), worst)
        page.page.screenshot(path=str(ARTIFACTS / "web-photos.png"))
        # a text file and a 50-MP photo: a message for one, an answer for the other, the tab alive
        (tmp_path / "notes.txt").write_text("not a photo")
        big = tmp_path / "big.jpg"
        Image.open(photos[0]).convert("RGB").resize((8660, 5774)).save(big, quality=80)
        answered = page.upload([tmp_path / "notes.txt", big])
        by = {r["name"]: r for r in answered}
        assert "not an image" in by["notes.txt"]["error"]
        assert by["big.jpg"]["top1"] in ("cats", "dogs") and "read at 1/8" in page.page.locator(".result").first.text_content()
        assert page.page.evaluate("1 + 1") == 2  # still answering
        (ARTIFACTS / "web-timing.json").write_text(json.dumps({"load_s": load, "photos": len(photos), "worst_p_diff": worst}))
        assert not page.errors and not page.off_server, (page.errors, page.off_server)
        b.close()


def fake_camera_video(picture: Path, path: Path, frames: int = 10) -> Path:
    """A Y4M clip (what Chromium's fake camera plays) showing `picture`, 640×480."""
    im = Image.open(picture).convert("RGB").resize((640, 480))
    y, cb, cr = (np.asarray(ch) for ch in im.convert("YCbCr").split())
    planes = y.tobytes() + cb[::2, ::2].tobytes() + cr[::2, ::2].tobytes()
    with open(path, "wb") as f:
        f.write(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\n")
        for _ in range(frames):
            f.write(b"FRAME\n" + planes)
    return path


@needs_photos
def test_photo_page_camera_live_and_refused(browser, cats_dogs_run, tmp_path):
    run, photos = cats_dogs_run
    w = export_web(run, tmp_path / "web")
    picture = photos[-1]  # a dog
    expected = Predictor.from_checkpoint(run, device="cpu").predict([str(picture)])[0]["top_k"][0][0]
    clip = fake_camera_video(picture, tmp_path / "camera.y4m")
    with static_server(w.path) as url:
        b = browser.chromium.launch(executable_path=chromium(), headless=True, args=[
            "--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}"])
        page = Page(b, url, permissions=["camera"])
        page.open()
        page.page.click("#camera")
        page.page.wait_for_function("Number(document.getElementById('live').dataset.frames || 0) >= 3", timeout=60_000)
        assert page.page.locator("#live").get_attribute("data-top1") == expected
        page.page.screenshot(path=str(ARTIFACTS / "web-camera.png"))
        page.page.click("#camera")  # stop
        assert page.page.evaluate("document.body.dataset.camera") == "off"
        assert not page.errors and not page.off_server, (page.errors, page.off_server)
        b.close()
        # no permission: a message naming it, the page still answers photos
        b = browser.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
        page = Page(b, url)
        page.open()
        page.page.click("#camera")
        page.page.wait_for_function("document.body.dataset.camera === 'refused'", timeout=30_000)
        assert "camera" in page.page.locator("#message").text_content()
        assert page.upload(photos[:1])[0]["top1"] in ("cats", "dogs")
        b.close()


def test_digit_page_answers_as_predict_on_200_mnist_digits(browser, mnist_run, tmp_path):
    from smallvision.data import load_dataset

    w = export_web(mnist_run, tmp_path / "web")
    data = load_dataset("mnist")
    files = []
    for i in range(200):
        files.append(tmp_path / f"{i:03d}.png")
        Image.fromarray(data.test_x[i, 0].numpy()).save(files[-1])
    with static_server(w.path) as url:
        b = browser.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
        page = Page(b, url)
        page.open()
        same, worst = agree(page.upload(files), Predictor.from_checkpoint(mnist_run, device="cpu"), files)
        assert same == 200 and worst <= 1e-3, (same, worst)
        draw(page.page, [[(0.25, 0.22), (0.72, 0.22)], [(0.72, 0.22), (0.60, 0.50), (0.42, 0.82)]])  # a 7
        page.page.wait_for_function("document.body.dataset.pending === '0' && "
                                    "document.getElementById('draw-label').dataset.label", timeout=20_000)
        assert page.page.locator("#draw-label").get_attribute("data-label") == "7"
        assert not page.errors and not page.off_server, (page.errors, page.off_server)
        b.close()
