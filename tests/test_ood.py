""""None of these" (ood.py): every registered detector tells far-away features from its training
features, the threshold accepts the share it promises, and a trained run carries its detector
through the checkpoint, predict, evaluate, serve's answer and an exported ONNX graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import run_main
from smallvision import ood
from smallvision.config import TrainConfig


def _clusters(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(3, 16) * 6
    y = torch.randint(0, 3, (n,), generator=g)
    return centres[y] + torch.randn(n, 16, generator=g), y


def _head() -> nn.Linear:
    head = nn.Linear(16, 3)
    with torch.no_grad():
        head.weight.copy_(torch.eye(3, 16))
        head.bias.zero_()
    return head


@pytest.mark.parametrize("name", [e.name for e in ood.DETECTORS if e.contract.uses_features])
def test_feature_detectors_score_far_images_higher(name: str) -> None:
    f, y = _clusters(3000, 0)
    head = _head()
    det = ood.fit_detector(name, f, y, head(f).detach(), head)
    f_in, _ = _clusters(500, 1)
    g = torch.Generator().manual_seed(2)
    f_out = torch.randn(500, 16, generator=g) * 2 + torch.cat([torch.zeros(500, 3), torch.full((500, 13), 3.0)], 1)
    s_in = ood.score_features(det, f_in, head(f_in).detach())
    s_out = ood.score_features(det, f_out, head(f_out).detach())
    assert ood.auroc(s_in, s_out) > 0.95
    assert ood.fpr_at_95(s_in, s_out) < 0.2


@pytest.mark.parametrize("name", [e.name for e in ood.DETECTORS if e.contract.uses_features])
def test_feature_detectors_stay_sane_on_a_few_labelled_images(name: str) -> None:
    """6 training images of 16 features (a few photos per class on a 1 280-feature backbone, scaled
    down): fewer images than ViM's principal dimensions; the scores stay finite and ordered."""
    f, y = _clusters(6, 0)
    head = _head()
    det = ood.fit_detector(name, f, y, head(f).detach(), head)
    f_in, _ = _clusters(500, 1)
    f_out = torch.randn(500, 16, generator=torch.Generator().manual_seed(2)) * 2 + torch.full((16,), 3.0)
    s_in = ood.score_features(det, f_in, head(f_in).detach())
    s_out = ood.score_features(det, f_out, head(f_out).detach())
    assert torch.isfinite(s_in).all() and s_in.abs().max() < 1e4
    assert ood.auroc(s_in, s_out) > 0.9


def test_vim_gives_way_to_knn_when_too_few_images_estimate_its_subspace() -> None:
    """ViM's principal subspace on 1 280 features has 512 dimensions: a run fits it only on more images
    (in each half when the threshold's scores are cross-fitted); below that, k-NN and the reason."""
    assert ood.vim_dim(1280) == 512 and ood.vim_dim(16) == 8
    assert ood.detector_for("vim", 2000, 1280, cross_fitted=False) == ("vim", "")
    assert ood.detector_for("vim", 1000, 1280, cross_fitted=False) == ("vim", "")
    name, why = ood.detector_for("vim", 1000, 1280, cross_fitted=True)  # 500 in each half
    assert name == "knn" and "512" in why and "1000" in why
    assert ood.detector_for("vim-energy", 1000, 1280, cross_fitted=True)[0] == "knn"  # ViM inside it too
    assert ood.detector_for("energy", 10, 1280, cross_fitted=True) == ("energy", "")  # others need no subspace


@pytest.mark.parametrize("name", ["msp", "energy"])
def test_logit_detectors_score_undecided_images_higher(name: str) -> None:
    f, y = _clusters(1000, 0)
    head = _head()
    det = ood.fit_detector(name, f, y, head(f).detach(), head)
    f_in, _ = _clusters(500, 1)
    f_mid = torch.randn(500, 16, generator=torch.Generator().manual_seed(3)) * 0.5  # between the classes
    s_in, s_mid = (ood.score_features(det, x, head(x).detach()) for x in (f_in, f_mid))
    assert ood.auroc(s_in, s_mid) > 0.95


def test_detector_rebuilds_from_its_tensors() -> None:
    f, y = _clusters(800, 0)
    head = _head()
    for entry in ood.DETECTORS:
        det = ood.fit_detector(entry.name, f, y, head(f).detach(), head)
        again = ood.empty_detector(entry.name, dict(det.state_dict()))
        x = f[:50]
        assert torch.allclose(ood.score_features(det, x, head(x).detach()), ood.score_features(again, x, head(x).detach()))


def test_threshold_accepts_the_share_it_promises() -> None:
    scores = torch.randn(4000, generator=torch.Generator().manual_seed(0))
    doc = {"quantiles": ood.quantiles(scores), "threshold": 0.0}
    for share in (0.5, 0.9, 0.95, 0.99):
        accepted = float((scores <= ood.threshold_at(doc, share)).float().mean())
        assert abs(accepted - share) < 0.006
    assert ood.threshold_at(doc, None) == 0.0
    for bad in (0, 1.5, -0.2):
        with pytest.raises(Exception, match="--accept must be in"):
            ood.threshold_at(doc, bad)


def test_fpr_at_95_counts_accepted_ood() -> None:
    s_in = torch.arange(100.0)  # the 95 % threshold: 94.05
    assert ood.fpr_at_95(s_in, torch.tensor([10.0, 200.0, 300.0, 94.0])) == 0.5


def _images(tmp_path: Path) -> list[str]:
    """Two real MNIST test digits and two noise pictures, as files a user would give predict."""
    import gzip
    import os

    root = Path(os.environ["SMALLVISION_DATA"]) / "mnist"
    raw = gzip.open(root / "t10k-images-idx3-ubyte.gz").read()[16:]
    digits = np.frombuffer(raw, np.uint8).reshape(-1, 28, 28)
    paths = []
    for i in range(2):
        p = tmp_path / f"digit{i}.png"
        Image.fromarray(digits[i]).save(p)
        paths.append(str(p))
    rng = np.random.default_rng(0)
    for i in range(2):
        p = tmp_path / f"noise{i}.png"
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def test_trained_run_answers_none_of_these(mnist_run: Path, mnist_onnx: Path, tmp_path: Path) -> None:
    from smallvision import api
    from smallvision.modelfile import OnnxModel, load_model
    from smallvision.predict import NONE_OF_THESE, Predictor

    model, meta = load_model(mnist_run)
    doc = meta["ood"]
    assert doc["detector"] == ood.DEFAULT and doc["accept"] == TrainConfig().accept and len(doc["quantiles"]) == ood.QUANTILES
    assert doc["quantiles_on"] == "training (cross-fitted)"  # mnist-fast holds no validation split out: said so
    assert json.loads((mnist_run / "ood.json").read_text())["threshold"] == doc["threshold"]

    files = _images(tmp_path)
    pred = Predictor.from_checkpoint(mnist_run, "cpu")
    out = pred.predict(files)
    assert all("ood_score" in r for r in out)
    for r in out:
        assert r["none_of_these"] == (r["ood_score"] > doc["threshold"])
        assert (r["label"] == NONE_OF_THESE) == r["none_of_these"]
    # a looser operating point rejects no more than a stricter one
    pred.accept(0.5)
    strict = sum(r["none_of_these"] for r in pred.predict(files))
    pred.accept(0.995)
    loose = sum(r["none_of_these"] for r in pred.predict(files))
    assert strict >= loose

    # the exported graph gives the same scores (second output) and the same answers
    onnx_pred = Predictor.from_checkpoint(mnist_onnx)
    assert onnx_pred.ood_threshold == pytest.approx(doc["threshold"])
    for a, b in zip(Predictor.from_checkpoint(mnist_run, "cpu").predict(files), onnx_pred.predict(files), strict=True):
        assert a["ood_score"] == pytest.approx(b["ood_score"], rel=1e-3, abs=1e-3)
        assert a["label"] == b["label"]
    assert OnnxModel.load(mnist_onnx).session.get_outputs()[1].name == "ood_score"

    # evaluate: the share of the test split accepted, and the accuracy there (≥ the whole split's)
    ev = api.evaluate(mnist_run, report=False, device="cpu")
    assert 80 <= ev["test_accepted_percent"] <= 100
    assert ev["test_accuracy_accepted"] >= ev["test_accuracy"]
    looser = api.evaluate(mnist_run, report=False, device="cpu", accept=0.999)
    assert looser["test_accepted_percent"] >= ev["test_accepted_percent"]


def test_accept_out_of_range_is_one_line(mnist_run: Path, tmp_path: Path) -> None:
    files = _images(tmp_path)
    r = run_main("predict", str(mnist_run), files[0], "--accept", "1.5")
    assert r.returncode == 2
    assert "--accept must be in (0, 1]" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_ood_none_trains_without_a_detector(runs_dir: Path, tmp_path: Path) -> None:
    from smallvision import api
    from smallvision.modelfile import load_model

    res = api.train(None, runs_dir=runs_dir, dataset="digits", epochs=1, ood="none",
                    report=False)
    model, meta = load_model(res.run_dir)
    assert "ood" not in meta and getattr(model, "ood", None) is None
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    r = run_main("predict", str(res.run_dir), str(img), "--accept", "0.9")
    assert r.returncode == 2 and "carries no OOD detector" in r.stderr


def test_cross_fitted_scores_are_not_flattered_by_their_own_bank() -> None:
    """A training image in its own k-NN bank scores as more familiar than any new image; scored by
    the detector fitted on the other half, it scores like a new image of the same distribution."""
    f, y = _clusters(1000, 0)  # k = 1: each image's own nearest neighbour is itself
    head = _head()
    z = head(f).detach()
    det = ood.fit_detector("knn", f, y, z, head)
    own = ood.score_features(det, f, z)
    crossed = ood.cross_fitted_scores("knn", f, y, z, head)
    f_new, _ = _clusters(1000, 1)
    new = ood.score_features(det, f_new, head(f_new).detach())
    assert float(own.median()) < 0.9 * float(new.median())
    # the halves' banks are half the size (a little farther apart): near, not equal
    assert abs(float(crossed.quantile(0.95)) - float(new.quantile(0.95))) < 0.15 * float(new.quantile(0.95))


def test_the_settings_offer_every_registered_detector() -> None:
    from smallvision.config import FIELDS, TrainConfig

    assert set(FIELDS["ood"].metadata["choices"]) == {*ood.DETECTORS.names(), "none"}
    assert TrainConfig().ood == ood.DEFAULT


def test_examples_tighten_the_threshold_only_as_far_as_it_pays() -> None:
    """In-distribution scores N(0, 1); examples N(2, 1): the chosen share minimises own images refused
    plus examples accepted over the steps from the run's accept down to the floor (brute force
    here), never loosens, and stops at the floor however many examples get through."""
    g = torch.Generator().manual_seed(0)
    doc = {"quantiles": ood.quantiles(torch.randn(20000, generator=g)), "accept": 0.97}
    out = torch.randn(4000, generator=g) + 2
    a = ood.accept_from_examples(doc, out)

    def cost(x: float) -> float:
        return (1 - x) + float((out <= ood.threshold_at(doc, x)).float().mean())

    steps = [i / 200 for i in range(180, 195)]  # 0.90 .. 0.97
    assert ood.MIN_ACCEPT <= a < 0.97 and cost(a) == pytest.approx(min(cost(x) for x in steps), abs=1e-9)
    assert ood.accept_from_examples(doc, torch.full((50,), 10.0)) == 0.97  # already refused: unchanged
    assert ood.accept_from_examples(doc, torch.zeros(50) - 5) == 0.97  # inseparable: refusing more never pays
    assert ood.accept_from_examples(doc, torch.randn(4000, generator=g) + 0.5, floor=0.95) >= 0.95
    off_grid = {**doc, "accept": 0.973}  # between two stored steps: never rounded up (looser)
    assert ood.accept_from_examples(off_grid, torch.full((50,), 10.0)) == 0.973
    assert ood.accept_from_examples(off_grid, out) <= 0.973


def test_calibrate_with_ood_examples_moves_the_stored_threshold(mnist_run: Path, tmp_path: Path) -> None:
    """`calibrate RUN --ood-examples DIR` writes the tightened threshold into the checkpoints and
    ood.json, predict then answers with it, and a second call starts again from the run's own accept."""
    import shutil

    from smallvision.predict import Predictor

    run = tmp_path / "run"
    shutil.copytree(mnist_run, run)
    ex = tmp_path / "other"
    ex.mkdir()
    rng = np.random.default_rng(1)
    for i in range(40):  # sparse blobs and strokes: some look like ink, some like nothing
        a = np.zeros((28, 28), np.uint8)
        for _ in range(1 + i % 4):
            y, x, h, w = rng.integers(0, 20, 4)
            a[y : y + 2 + h % 8, x : x + 2 + w % 8] = 255
        Image.fromarray(a).save(ex / f"blob{i}.png")
    before = Predictor.from_checkpoint(run, "cpu").ood
    r = run_main("calibrate", str(run), "--ood-examples", str(ex), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["accept_before"] == before["accept"] and ood.MIN_ACCEPT <= doc["accept"] <= before["accept"]
    assert doc["examples"] == 40 and doc["examples_accepted_percent"] <= doc["examples_accepted_percent_before"]
    p = Predictor.from_checkpoint(run, "cpu")
    assert p.ood["accept"] == doc["accept"] and p.ood_threshold == pytest.approx(ood.threshold_at(before, doc["accept"]))
    assert json.loads((run / "ood.json").read_text())["examples"]["images"] == 40
    got = p.predict([str(f) for f in sorted(ex.iterdir())])
    assert 100 * sum(not g["none_of_these"] for g in got) / 40 == pytest.approx(doc["examples_accepted_percent"], abs=0.01)
    again = json.loads(run_main("calibrate", str(run), "--ood-examples", str(ex), "--json").stdout.strip().splitlines()[-1])
    assert again["accept_before"] == before["accept"] and again["accept"] == doc["accept"]
    r = run_main("calibrate", str(run), "--ood-examples", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "no such folder" in r.stderr
