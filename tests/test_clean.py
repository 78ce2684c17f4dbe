"""Cross-validation and the label-issue finder: every image predicted once by a model that never saw
it; flipped labels found (the slow test: 3 % of a 6 000-image MNIST subset); near-duplicates that
carry different labels; bad input in one line."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import _available, run_main
from smallvision.data.folds import fold_indices, take_fold

FAKE = ["--dataset", "fake:1x12x12", "--data-arg", "classes=3", "--data-arg", "train=240", "--data-arg", "test=60",
        "--set", "model=seed-mlp-plain", "--set", "epochs=2", "--set", "val_size=0"]


def test_folds_are_stratified_disjoint_and_cover_every_image():
    y = torch.arange(103) % 4
    folds = fold_indices(y, 5, seed=0)
    allidx = np.concatenate(folds)
    assert sorted(allidx.tolist()) == list(range(103))  # each image in exactly one fold
    for f in folds:
        counts = np.bincount(y.numpy()[f], minlength=4)
        assert counts.max() - counts.min() <= 1  # the class shares kept
    assert [f.tolist() for f in fold_indices(y, 5, seed=0)] == [f.tolist() for f in folds]  # seeded


def test_take_fold_trains_on_the_others_and_tests_on_it():
    from smallvision.data import load_dataset

    data = load_dataset("fake:1x8x8", options={"classes": 3, "train": 90, "test": 30})
    held = fold_indices(data.train_y, 3, 0)[1]
    f = take_fold(data, 3, 1, "train", 0)
    assert len(f.test_y) == len(held) and len(f.train_y) == 90 - len(held)
    assert torch.equal(f.test_x, data.train_x[torch.from_numpy(held)])
    rows = {bytes(r.numpy().tobytes()) for r in f.train_x}
    assert not any(bytes(r.numpy().tobytes()) in rows for r in f.test_x)  # no held-out image is trained on


def test_cv_command_reports_mean_and_std_and_keeps_the_fold_runs(tmp_path):
    # no fold reports: an MLP's report explains by occlusion, seconds a fold, and nothing here reads it
    r = run_main("cv", *FAKE, "--set", "report=false", "--folds", "3", "--runs-dir", str(tmp_path), "--name", "cv", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    accs = [row["accuracy"] for row in doc["fold_runs"]]
    assert len(accs) == 3 and doc["mean_accuracy"] == pytest.approx(np.mean(accs), abs=1e-3)
    assert doc["std_accuracy"] == pytest.approx(np.std(accs, ddof=1), abs=1e-3)
    oof = np.load(tmp_path / "cv" / "oof.npz")
    assert oof["probs"].shape == (240, 3) and np.allclose(oof["probs"].sum(1), 1, atol=1e-4)
    assert sorted(np.bincount(oof["fold"]).tolist()) == [80, 80, 80]
    for i in range(3):
        cfg = json.loads((tmp_path / "cv" / f"fold-{i}" / "config.json").read_text())
        assert (cfg["folds"], cfg["fold"], cfg["fold_split"]) == (3, i, "train")
    # the out-of-fold accuracy is the fold runs' test figures, pooled
    assert doc["oof_accuracy"] == pytest.approx(100 * (oof["probs"].argmax(1) == oof["labels"]).mean(), abs=1e-3)


def test_near_duplicates_with_different_labels_are_paired():
    from smallvision.clean import near_duplicates

    g = torch.Generator().manual_seed(0)
    imgs = (torch.rand(6, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    imgs[4] = imgs[1]  # the same photo filed under another class
    imgs[5] = (imgs[2].int() + 3).clamp(0, 255).to(torch.uint8)  # a brighter copy, same class: not a label problem
    labels = np.array([0, 0, 1, 1, 1, 1])
    assert near_duplicates(imgs, labels) == [(1, 4, 0)]


@pytest.mark.slow  # ~6 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_labels_on_a_folder_names_files_and_near_duplicates(tmp_path):
    from smallvision.data.synthetic import write_image_folder

    root = write_image_folder(tmp_path / "pets", k=3, n=20, size=16)
    src = sorted((root / "train" / "class_0").glob("*.png"))[0]
    Image.open(src).save(root / "train" / "class_1" / "copy.png")  # a duplicate under another label
    r = run_main("labels", str(root), "--folds", "2", "--recipe", "mnist-fast", "--set", "epochs=2", "--set", "report=false",
                 "--runs-dir", str(tmp_path / "runs"), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    pairs = doc["near_duplicates_with_different_labels"]
    assert any({p["a"].rsplit("/", 1)[-1], p["b"].rsplit("/", 1)[-1]} == {src.name, "copy.png"} for p in pairs)
    assert all("file" in s for s in doc["suspects"])
    rows = (tmp_path / "runs").glob("cv-*/suspects.csv")
    assert next(rows).read_text().startswith("index,file,given,suggested,self_confidence")


@pytest.mark.parametrize("args,words", [
    (["--folds", "1"], "at least 2"),
    (["--data-arg", "classes=1"], "≥2 classes"),
])
def test_cv_and_labels_bad_input_is_one_line(args, words, tmp_path):
    for cmd in (["cv", *FAKE], ["labels", "fake:1x12x12", *FAKE[2:]]):
        r = run_main(*cmd, *args, "--runs-dir", str(tmp_path))
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, (cmd, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1


def test_labels_on_an_empty_folder_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run_main("labels", str(tmp_path / "empty"), "--runs-dir", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # 5 folds of mnist-accurate on 6 000 images (about 30 s): make test-slow, run by CI
@pytest.mark.skipif(not _available("mnist"), reason="MNIST files not found")
def test_flipped_labels_are_found(tmp_path):
    from smallvision.clean import label_issues
    from smallvision.data import load_dataset

    d = load_dataset("mnist")
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(d.train_y))[:6000]
    x, y = d.train_x[idx, 0].numpy(), d.train_y[idx].numpy().copy()
    flip = rng.choice(6000, 180, replace=False)  # 3 %, each to another class
    y[flip] = (y[flip] + rng.integers(1, 10, 180)) % 10
    np.savez(tmp_path / "noisy.npz", x_train=x, y_train=y, x_test=d.test_x[:500, 0].numpy(),
             y_test=d.test_y[:500].numpy())
    r = label_issues(f"npz:{tmp_path / 'noisy.npz'}", "train", runs_dir=tmp_path / "runs")
    found = {s["index"] for s in r["suspects"]}
    hit = len(found & set(flip.tolist()))
    assert hit / len(found) >= 0.8 and hit / 180 >= 0.8, (len(found), hit)
    assert len(list((tmp_path / "runs").glob("cv-*/suspects.png"))) == 1
    import csv

    rows = list(csv.DictReader(open(r["ranking_csv"])))  # every image, most doubtful first
    assert len(rows) == 6000 and {int(row["index"]) for row in rows if row["flagged"] == "1"} == found
    head = {int(row["index"]) for row in rows[:180]}
    assert len(head & set(flip.tolist())) / 180 >= 0.8  # the first 180 of the ranking: mostly the flips


def test_every_image_is_ranked_by_label_quality_and_the_flagged_are_marked(tmp_path):
    """label_ranking.csv lists every image once, lowest probability of the given label first (ties
    in the data set's order), with the given and suggested class and whether confident learning
    flagged it; the ranking goes on past the flagged ones."""
    import csv

    from smallvision.clean import _write_ranking, rank_all, rank_issues

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    probs = np.full((120, 3), 0.05)
    probs[np.arange(120), labels] = 0.9
    wrong = rng.choice(120, 6, replace=False)
    probs[wrong] = 0.05
    probs[wrong, (labels[wrong] + 1) % 3] = 0.9  # confidently another class: label errors
    probs[7] = [0.4, 0.35, 0.25]  # a doubtful, not flagged one
    probs /= probs.sum(1, keepdims=True)
    order, quality = rank_all(probs, labels)
    flagged = np.zeros(120, bool)
    flagged[rank_issues(probs, labels)] = True
    assert set(order[:6].tolist()) == set(wrong.tolist()) and flagged[wrong].all()
    assert list(np.sort(quality)) == list(quality[order]) and sorted(order.tolist()) == list(range(120))
    _write_ranking(tmp_path / "r.csv", order, quality, flagged, labels, probs.argmax(1), probs, ["a", "b", "c"], None)
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert [int(r["rank"]) for r in rows] == list(range(1, 121)) and int(rows[6]["index"]) == 7
    assert rows[6]["flagged"] == "0" and all(r["flagged"] == "1" for r in rows[:6])


def test_labels_on_photos_folds_train_the_transfer_recipe_when_weights_are_installed():
    """The folds of `labels` on a photo folder: the frozen ImageNet features and a linear head
    (photo-transfer-fast) whenever the weights are here, whatever the photo default is called
    (it became photo-auto, and the folds had fallen back to 60 epochs from scratch)."""
    from smallvision.clean import default_recipe
    from smallvision.models.pretrained import weights_available

    want = "photo-transfer-fast" if weights_available("efficientnet-lite0") else "photo-fast"
    assert default_recipe("folder:/any/photos") == want
    assert default_recipe("mnist") == "mnist-accurate" and default_recipe("fashion-mnist") == "fashion-fast"
