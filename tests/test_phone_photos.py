"""Phone photos as they come (issue 45, part 4): a folder built by tests/fixtures/make_phone_folder.py
holds HEIC, AVIF, WebP, an EXIF-rotated JPEG, CMYK, 16-bit, a palette PNG with transparency and a
24-MP JPEG, beside an empty file, a truncated JPEG, a `.txt` and a `.DS_Store`. Everything readable
decodes upright and converted, trains and predicts; the rest is named and counted in one line and
in the report; a class of HEIC photos without the HEIF reader is a one-line error (exit 2)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_main
from smallvision import api
from smallvision.data import formats, load_dataset
from smallvision.data.check import HUGE_PIXELS, check_folder
from smallvision.data.folder import open_image, resize_center_crop
from smallvision.errors import DataError
from smallvision.predict import Predictor

FIXTURES = Path(__file__).resolve().parent / "fixtures"  # the test builders
sys.path.insert(0, str(FIXTURES))
from make_phone_folder import BLUE, RED  # noqa: E402

READABLE = 30  # images that decode (17 under red/, 13 under blue/); 3 more files do not (33 in all)


@pytest.fixture(scope="module")
def phone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """Built in another process: writing HEIC registers pillow-heif's opener, and this process must
    read the files only through the registration smallvision does itself."""
    root = tmp_path_factory.mktemp("phone") / "photos"
    out = subprocess.run([sys.executable, str(FIXTURES / "make_phone_folder.py"), str(root)], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    return root, {k: Path(v) for k, v in (line.split(": ", 1) for line in out.splitlines())}


@pytest.fixture
def no_heif(monkeypatch: pytest.MonkeyPatch) -> None:
    """pillow-heif as if not installed: the one place that registers readers says HEIF is missing."""
    monkeypatch.setattr(formats, "readers", lambda: {"HEIF": False, "AVIF": True})


def _close(pixel: np.ndarray, colour: tuple[int, int, int], tol: int = 40) -> bool:
    return bool(np.abs(pixel.astype(int) - np.array(colour)).max() <= tol)


def test_phone_formats_decode_upright_and_converted(phone):
    _, f = phone
    for key in ("red.heic", "red.avif", "red.webp", "rotated", "rotated.heic", "rotated.avif", "rotated.webp", "cmyk"):
        a = np.asarray(open_image(f[key], 3))
        assert a.shape == (40, 60, 3), key  # upright: 60 wide, 40 high
        assert _close(a[8, 30], RED) and _close(a[32, 30], BLUE), key  # red on top, blue below
    for key in ("blue.heic", "blue.avif", "blue.webp"):
        a = np.asarray(open_image(f[key], 3))
        assert _close(a[8, 30], BLUE) and _close(a[32, 30], RED), key
    deep = np.asarray(open_image(f["deep"], 1), dtype=int)  # 16-bit: scaled to 8 bits, not clipped
    assert abs(deep[5, 5] - round(60000 / 65535 * 255)) <= 1 and abs(deep[35, 5] - round(10000 / 65535 * 255)) <= 1
    pal = np.asarray(open_image(f["palette"], 3))  # palette + transparency: composited on white
    assert _close(pal[5, 5], BLUE, 0) and _close(pal[25, 5], RED, 0) and _close(pal[35, 5], (255, 255, 255), 0)
    from smallvision.serve import decode_image  # serve's uploads: HEIC read, turned upright as well

    for key in ("rotated", "rotated.heic", "rotated.avif", "rotated.webp"):
        im = decode_image(f[key].read_bytes(), 25_000_000)
        assert im.size == (60, 40) and _close(np.asarray(im.convert("RGB"))[8, 30], RED), key


def test_big_jpeg_decodes_at_reduced_size_with_nearly_the_same_pixels(phone, tmp_path):
    _, f = phone
    with Image.open(f["big"]) as im:
        assert im.size == (6000, 4000)
    small = open_image(f["big"], 3, 224)
    assert small.size == (750, 500)  # JPEG draft mode: 1/8 scale, the shorter side still ≥ 224
    a = np.asarray(resize_center_crop(small, 224), dtype=float)
    b = np.asarray(resize_center_crop(open_image(f["big"], 3), 224), dtype=float)
    assert np.abs(a - b).mean() < 1.5, np.abs(a - b).mean()
    # a 48-MP phone photo (8000 × 6000) is under Pillow's decompression-bomb limit: no warning, no error
    path = tmp_path / "48mp.jpg"
    Image.new("RGB", (8000, 6000), (90, 140, 200)).save(path, quality=80)
    assert 8000 * 6000 < HUGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_image(path, 3, 224).size == (1000, 750)


def test_check_lists_what_train_will_leave_out(phone):
    root, f = phone
    r = check_folder(root)
    assert sum(r["balance"]["train"].values()) + sum(r["balance"]["test"].values()) == READABLE
    assert sorted(Path(u.split(": ")[0]).name for u in r["unreadable"]) == ["empty.jpg", "truncated.jpg"]
    assert any("empty file" in u for u in r["unreadable"]) and any("truncated JPEG" in u for u in r["unreadable"])
    assert r["not_images"] == [str(f["txt"])]  # not the HEIC, AVIF or WebP files; .DS_Store is passed over
    assert r["huge"] == [] and r["no_reader"] == []  # a 24-MP photo is not a problem
    assert r["problems"] == 3


def test_phone_folder_trains_and_predicts_and_names_what_it_skipped(phone, tmp_path):
    root, f = phone
    with pytest.warns(UserWarning) as caught:
        res = api.train(runs_dir=tmp_path / "runs", dataset=f"folder:{root}", data_args={"size": 32, "workers": 0},
                        model="cnn-fast", model_args={"widths": [8, 16]}, epochs=1, batch_size=8, val_size=0)
    lines = [str(w.message) for w in caught if str(w.message).startswith("skipped")]
    assert lines == [f"skipped 3 of {READABLE + 3} files: 1 not an image (red/notes.txt); 2 unreadable "
                     "(blue/truncated.jpg: truncated JPEG, red/empty.jpg: empty file)"]
    assert res.summary["skipped_images"] == 3
    rep = json.loads((res.run_dir / "report.json").read_text())
    assert sorted(Path(formats.split_entry(s)[0]).name for s in rep["skipped_files"]) == [
        "empty.jpg", "notes.txt", "truncated.jpg"]
    assert "Files skipped: 3 (1 not an image; 2 unreadable)" in (res.run_dir / "report.md").read_text()

    with pytest.warns(UserWarning, match="skipped 3 of"):  # every readable file is in the run's data
        data = load_dataset(f"folder:{root},size=32,workers=0")
    used = set(data.train_files or []) | set(data.test_files or [])
    assert len(data.train_x) + len(data.test_x) == READABLE == len(used)
    assert {str(f[k]) for k in ("red.heic", "blue.heic", "red.avif", "blue.avif", "red.webp", "big")} <= used

    phones = [str(f["red.heic"]), str(f["blue.avif"])]
    preds = Predictor.from_checkpoint(res.run_dir).predict(phones)
    assert [("error" in p, p.get("label") in ("red", "blue")) for p in preds] == [(False, True)] * 2
    r = run_main("predict", str(res.run_dir), *phones, "--format", "json")
    assert r.returncode == 0 and [json.loads(x)["label"] for x in r.stdout.splitlines()] == [p["label"] for p in preds]
    from smallvision.explain import Explainer

    (ex,) = Explainer(Predictor.from_checkpoint(res.run_dir)).explain([f["red.heic"]])
    assert "error" not in ex and ex["heatmaps"]


def test_heic_without_its_reader_is_named_with_the_package_to_install(phone, tmp_path, no_heif):
    root, f = phone
    with pytest.warns(UserWarning) as caught:  # a class that has other photos: trains, the HEIC files counted
        data = load_dataset(f"folder:{root},size=32,workers=0")
    (line,) = [str(w.message) for w in caught if str(w.message).startswith("skipped")]
    assert line.startswith(f"skipped 6 of {READABLE + 3} files: ")
    assert "3 HEIC without its reader (blue/blue_phone.heic, red/red_phone.heic, red/rotated.heic; " \
           "pip install pillow-heif)" in line
    assert len(data.train_x) + len(data.test_x) == READABLE - 3
    assert check_folder(root)["no_reader"][0].endswith("HEIC reader is not installed (pip install pillow-heif)")
    (pred,) = Predictor.from_checkpoint(_tiny_run(tmp_path)).predict([f["red.heic"]])
    assert "pip install pillow-heif" in pred["error"]

    iphone = tmp_path / "iphone"  # a class folder whose photos are all HEIC: a one-line error, exit 2
    for c, keys in (("heic", ("red.heic", "blue.heic", "rotated.heic")), ("jpeg", ("rotated", "cmyk"))):
        (iphone / c).mkdir(parents=True)
        for k in keys:
            shutil.copy(f[k], iphone / c / f[k].name)
    with pytest.raises(DataError, match=r"class folder heic/: its 3 photo\(s\) are all HEIC .*pip install pillow-heif"):
        load_dataset(f"folder:{iphone}")
    r = run_main("train", "--dataset", f"folder:{iphone}", "--model", "cnn-fast", "--epochs", "1",
                 "--runs-dir", str(tmp_path / "runs"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: ") and "heic/" in r.stderr and "pip install pillow-heif" in r.stderr


def _tiny_run(tmp_path: Path) -> Path:
    """A model for predict to load (trained on a folder of plain JPEGs)."""
    root = tmp_path / "plain"
    rng = np.random.default_rng(1)
    for c, colour in (("red", RED), ("blue", BLUE)):
        (root / c).mkdir(parents=True)
        for i in range(6):
            a = np.clip(np.array(colour) + rng.normal(0, 8, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / c / f"{i}.png")
    return api.train(runs_dir=tmp_path / "runs", dataset=f"folder:{root}", data_args={"workers": 0}, model="cnn-fast",
                     model_args={"widths": [8, 16]}, epochs=1, batch_size=8, val_size=0, report=False).run_dir


def test_skip_summary_names_counts_and_reasons():
    skipped = [f"/d/a/{i}.jpg (unreadable: truncated JPEG (OSError: image file is truncated))" for i in range(5)]
    skipped += ["/d/b (1)/x.heic (HEIC reader is not installed (pip install pillow-heif))", "/d/a/n.txt (not an image)"]
    assert formats.split_entry(skipped[-2]) == ("/d/b (1)/x.heic", "HEIC reader is not installed (pip install pillow-heif)")
    assert formats.skip_summary(skipped, 120, "/d") == (
        "skipped 7 of 120 files: 5 unreadable (a/0.jpg: truncated JPEG, a/1.jpg: truncated JPEG, a/2.jpg: truncated "
        "JPEG and 2 more); 1 HEIC without its reader (b (1)/x.heic; pip install pillow-heif); 1 not an image (a/n.txt)")
    assert formats.failure_reason("x.png", OSError("broken PNG file")) == "unreadable: OSError: broken PNG file"
    assert formats.skip_summary([]) == ""
    from smallvision.data.folder import IMAGE_EXTS  # one extension list, shared by folder, predict and check
    from smallvision.predict import IMAGE_EXTS as PREDICT_EXTS

    assert IMAGE_EXTS is formats.IMAGE_EXTS is PREDICT_EXTS and {".heic", ".avif", ".webp"} <= IMAGE_EXTS
