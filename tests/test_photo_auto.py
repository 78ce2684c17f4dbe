"""The default photo recipe's data rules (recipes/rules.py) and the solved head (engine/head.py):
the plan follows the folder and the budget, the user's flags win, every rule gives its reason, the
head equals an independent logistic regression, and a real (tiny) run trains both phases."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_main
from smallvision import api
from smallvision.engine.budget import Speed
from smallvision.engine.head import CLASS_MEANS_UP_TO, fit_class_means, fit_head, fit_linear_head
from smallvision.errors import UsageError
from smallvision.models.pretrained import weights_available

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
needs_weights = pytest.mark.skipif(not weights_available("efficientnet-lite0"), reason="ImageNet weights not installed")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from make_photo_folder import make

    return make(tmp_path_factory.mktemp("auto") / "scenes", per_class=30)


@pytest.fixture
def speed(monkeypatch):
    """A fixed machine (0.1 s per training image, 0.02 s forward, 0.005 s decoding): the rule's arithmetic, not the probe."""
    import smallvision.engine.budget as budget

    monkeypatch.setattr(budget, "measure_speed", lambda *a, **k: Speed(0.005, 0.02, 0.1, "cpu"))


def plan(folder, **kw):
    return api.make_config("photo-auto", dataset=f"folder:{folder}", **kw)


def test_the_budget_sets_the_fine_tuning_epochs(folder, speed):
    """60 photos (train split 52, 5 of them validation): each epoch 47 × 0.1 s; more time, more epochs."""
    from smallvision.recipes.rules import SAFETY

    short, long = plan(folder, time="25s"), plan(folder, time="65s")
    assert 1 <= short.epochs < long.epochs
    assert long.epochs - short.epochs == pytest.approx(40 / (4.7 * SAFETY), abs=1.01)  # 40 s more, 4.7 s an epoch
    assert "fine-tuning epoch" in long.reasons["epochs"] and "65 s" in long.reasons["time"]
    capped = plan(folder, time="1h")
    assert capped.epochs == 21 and "capped at 20" in capped.reasons["epochs"]
    none = plan(folder, time="12s")  # under the decoding, feature pass and test: the head alone, seen as it is
    assert none.epochs == 1 and not none.hflip and none.tta and "no whole epoch" in none.reasons["epochs"]


def test_the_users_settings_win_and_say_what_the_rule_would_have_done(folder, speed):
    cfg = plan(folder, time="1h", epochs=3)
    assert cfg.epochs == 3 and "as given" in cfg.reasons["epochs"] and "21" in cfg.reasons["epochs"]
    replay = api.make_config(config=_as_json(cfg, folder.parent / "config.json"))  # a run's config.json: no rule runs
    assert replay.epochs == 3 and replay.to_dict() == cfg.to_dict()


def _as_json(cfg, path: Path) -> Path:
    path.write_text(json.dumps(cfg.to_dict()))
    return path


def test_few_photos_per_class_train_the_head_alone(tmp_path, speed):
    from make_photo_folder import make

    small = make(tmp_path / "few", per_class=6)
    cfg = plan(small, time="1h")
    assert cfg.epochs == 1 and "too few to validate fine-tuning" in cfg.reasons["epochs"]
    assert cfg.val_size == 0 and "neither choose nor calibrate" in cfg.reasons["val_size"]  # every photo trains the head
    assert "nearest class mean" in cfg.reasons["val_size"] and "no validation" in cfg.reasons["val_size"]


def test_class_means_are_the_nearest_mean_rule_with_a_scale_chosen_by_leave_one_out():
    """The layer's argmax is the nearest class mean (any scale), and its softmax's temperature is the one
    among the tried scales with the lowest leave-one-out log-loss, recomputed here the slow way."""
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(4, 30)) * 0.5  # overlapping classes: the best scale is finite
    y = torch.tensor(np.repeat(np.arange(4), 5))
    x = torch.tensor(centres[y.numpy()] + rng.normal(size=(20, 30)), dtype=torch.float32)
    fit = fit_class_means(x, y, 4)
    assert fit.kind == "class means" and fit.lam == 0.0
    q = torch.tensor(centres[rng.integers(0, 4, 200)] + rng.normal(size=(200, 30)) * 2, dtype=torch.float32)
    mu = torch.stack([x[y == c].mean(0) for c in range(4)])
    assert torch.equal((q @ fit.weight.T + fit.bias).argmax(1), torch.cdist(q, mu).argmin(1))

    def loo_loss(s):
        losses = []
        for i in range(len(y)):
            keep = torch.arange(len(y)) != i
            m = torch.stack([x[keep & (y == c)].mean(0) for c in range(4)])
            losses.append(torch.nn.functional.cross_entropy(-s * torch.cdist(x[i : i + 1], m).pow(2), y[i : i + 1]))
        return float(torch.stack(losses).mean())

    d2 = torch.cdist(mu, mu).pow(2)
    base = 1.0 / float(d2[d2 > 0].median())
    losses = {f: loo_loss(base * f) for f in (1, 2, 4, 8, 16, 32, 64)}
    best = min(losses, key=losses.get)
    assert 1 < best < 64 and fit.scale == pytest.approx(base * best, rel=1e-5)


def test_the_head_is_class_means_up_to_the_threshold_then_the_logistic_regression():
    rng = np.random.default_rng(3)
    for per_class, kind in ((1, "class means"), (CLASS_MEANS_UP_TO, "class means"),
                            (CLASS_MEANS_UP_TO + 1, "logistic regression")):
        y = torch.tensor(np.r_[np.repeat([0, 1], per_class), np.repeat(2, 40)])  # the smallest class decides
        x = torch.tensor(rng.normal(size=(len(y), 8)) + y.numpy()[:, None], dtype=torch.float32)
        assert fit_head(x, y, 3).kind == kind, per_class


@pytest.mark.parametrize("bad", ["0", "5parsecs", "-3m", "m"])
def test_a_bad_time_is_a_usage_error(folder, bad):
    with pytest.raises(UsageError, match="--time takes a duration"):
        plan(folder, time=bad)


def test_time_is_the_default_photo_recipes_and_other_recipes_say_so(folder):
    with pytest.raises(UsageError, match="use --max-time"):
        api.make_config("photo-transfer", dataset=f"folder:{folder}", time="5m")
    r = run_main("train", "--recipe", "mnist-fast", "--time", "5m")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--max-time" in r.stderr
    r = run_main("train", "--dataset", f"folder:{folder}", "--time", "5parsecs")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "5parsecs" in r.stderr


def test_the_solved_head_is_scikit_learns_logistic_regression():
    """Same objective, solved independently: L2 λ on standardised features is C = 1 / (λ N) in scikit-learn."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 20)) * 1.5
    y = rng.integers(0, 3, 300)
    x = centres[y] + rng.normal(size=(300, 20)) * (1 + np.arange(20))  # features of very different scales
    fit = fit_linear_head(torch.tensor(x, dtype=torch.float32), torch.tensor(y), 3, lambdas=(1e-2,))
    z = (x - x.mean(0)) / x.std(0, ddof=1)
    ref = LogisticRegression(C=1 / (1e-2 * len(y)), tol=1e-10, max_iter=10_000).fit(z, y)
    ours = torch.softmax(torch.tensor(x, dtype=torch.float32) @ fit.weight.T + fit.bias, 1).numpy()
    np.testing.assert_allclose(ours, ref.predict_proba(z), atol=2e-3)


def test_cross_validation_picks_the_strength_with_the_best_out_of_fold_accuracy():
    """Every strength is scored on held-out folds of the training set; the best is kept (ties: the
    stronger), and the solved head generalises to new draws of the same data."""
    rng = np.random.default_rng(1)

    def draw(n):
        y = rng.integers(0, 2, n)
        return torch.tensor(np.c_[(y[:, None] * 2 - 1) + rng.normal(size=(n, 1)), rng.normal(size=(n, 50))],
                            dtype=torch.float32), torch.tensor(y)

    fit = fit_linear_head(*draw(300), 2)
    best = max(fit.cv_accuracy.values())
    assert len(fit.cv_accuracy) == 6 and fit.lam == max(k for k, v in fit.cv_accuracy.items() if v == best)
    x, y = draw(2000)
    acc = float(((x @ fit.weight.T + fit.bias).argmax(1) == y).float().mean())
    assert acc > 0.80  # the Bayes rate is 84 % (one informative feature, unit noise)


@needs_weights
@pytest.mark.slow  # ~8.5 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_the_default_on_a_folder_solves_the_head_then_fine_tunes_and_reports_why(folder, tmp_path):
    """A real run of the default (ImageNet weights), planned at 96 px with room for one fine-tuning epoch."""
    r = run_main("train", "--dataset", f"folder:{folder}", "--data-arg", "size=96", "--time", "60s", "--epochs", "2",
                 "--runs-dir", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["recipe"] == "photo-auto" and s["steps"] == 1 + -(-47 // 32)  # the solve, then one epoch of batches
    assert "head solved (L2" in r.stderr and "phase 2 (top 1 stage) epoch" in r.stderr and "time: --time 60s" in r.stderr
    cfg = json.loads((Path(s["run_dir"]) / "config.json").read_text())
    assert cfg["head"] == "exact" and "as given" in cfg["reasons"]["epochs"] and "speed" in cfg["reasons"]
    report = (Path(s["run_dir"]) / "report.md").read_text()
    assert "Why these settings" in report and "Candidates (validation)" in report
    assert "head on features (solved)" in report and "fine-tuned, 1 epochs" in report


@needs_weights
@pytest.mark.slow  # a real run: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_a_few_photos_per_class_train_class_means_and_say_so(tmp_path):
    """6 photos per class: the default trains the nearest-class-mean head alone on every photo, logs
    and records it, and the report says there was no validation."""
    from make_photo_folder import make

    small = make(tmp_path / "few", per_class=6)
    r = run_main("train", "--dataset", f"folder:{small}", "--data-arg", "size=96", "--runs-dir", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert "head = the nearest class mean" in r.stderr
    meta = json.loads((Path(s["run_dir"]) / "config.json").read_text())
    assert meta["val_size"] == 0 and "no validation" in meta["reasons"]["val_size"]
    report = (Path(s["run_dir"]) / "report.md").read_text()
    assert "no validation" in report and "nearest class mean" in report
    assert s["test_accuracy"] >= 50  # two scenes, one of them flowers: far from chance even on 10 photos


@pytest.mark.slow  # ~16 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
@needs_weights
def test_top_stages_split_is_the_backbone_and_phase_2_trains_only_the_top(tmp_path):
    """top(bottom(x)) is the backbone's output; a --top-stages 1 run leaves every weight below the
    last stage as ImageNet's (bit for bit), changes the last stage, and its saved model, run whole
    on the images, gives the run's own test figure."""
    from smallvision.data.info import DatasetInfo
    from smallvision.modelfile import load_checkpoint
    from smallvision.models import create_model
    from smallvision.models.base import split_features

    info = DatasetInfo("t", 3, 3, 32, 32, (0.5,) * 3, (0.5,) * 3, ("a", "b", "c"))
    m = create_model("efficientnet-lite0", info, pretrained=True).eval()
    bottom, top = split_features(m, 1)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(top(bottom(x)), m.features(x))
    with pytest.raises(UsageError, match="1-7"):
        split_features(m, 8)
    r = api.train(dataset="fake:3x32x32", data_args={"classes": 3, "train": 120, "test": 30}, model="efficientnet-lite0",
                  model_args={"pretrained": True}, freeze=True, cache_features=True, head="exact", unfreeze_after=1,
                  epochs=3, top_stages=1, optimizer="adamw", lr=3e-3, batch_size=32, report=False, runs_dir=tmp_path)
    w = load_checkpoint(r.run_dir / "last.safetensors")[0]
    start = m.state_dict()
    n_blocks = len(m.features[-1].blocks)
    below = [k for k in start if k.startswith("features.") and f"blocks.{n_blocks - 1}." not in k
             and not k.startswith(("features.1.conv_head", "features.1.bn2"))]
    assert below and all(torch.equal(w[k], start[k]) for k in below)
    top_keys = [k for k in start if f"blocks.{n_blocks - 1}." in k and k.endswith("weight")]
    assert any(not torch.equal(w[k], start[k]) for k in top_keys)
    again = api.evaluate(r.run_dir)
    assert again["test_accuracy"] == pytest.approx(r.summary["test_accuracy"], abs=0.01)


def test_top_stages_on_a_model_without_stages_is_one_line(tmp_path):
    r = run_main("train", "--dataset", "fake:1x28x28", "--model", "cnn-fast", "--freeze", "--cache-features",
                 "--unfreeze-after", "1", "--epochs", "2", "--top-stages", "1", "--runs-dir", str(tmp_path))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--top-stages needs" in r.stderr


def test_a_class_without_labelled_images_is_never_predicted_by_class_means():
    """A class with no image in the training split must not become a mean at the origin (which
    small-norm features would all be closest to)."""
    x = torch.tensor([[1.0, 1.0], [1.2, 0.9], [-1.0, 1.0], [-0.9, 1.1]])
    fit = fit_class_means(x, torch.tensor([0, 0, 1, 1]), 3)
    q = torch.tensor([[0.3, 0.3], [0.0, 0.0], [-0.2, 0.1]])
    assert ((q @ fit.weight.T + fit.bias).argmax(1) != 2).all()


@pytest.mark.parametrize("epochs", [pytest.param(1, id="head-alone", marks=pytest.mark.slow),  # ~8 CPU-s each
                                    pytest.param(2, id="top-stage-fine-tuned")])
def test_the_detector_reads_the_cache_and_gets_what_a_pass_over_the_images_gives(tmp_path, monkeypatch, epochs):
    """The none-of-these detector's training and validation features come from the run's cache (the
    frozen backbone's features; the activations below the fine-tuned top, through it) instead of
    another pass over the images: the same features and logits, for every image."""
    import smallvision.engine.trainer as trainer
    import smallvision.ood as ood

    fast, pass_over = trainer._ood_inputs, ood.features_and_logits
    seen = {}

    def both(s, final, take):
        passes = []
        with monkeypatch.context() as m:  # a pass over the images inside would be the slow way
            m.setattr(ood, "features_and_logits", lambda *a, **k: passes.append(1) or pass_over(*a, **k))
            (f, z, y), val = fast(s, final, take)
        parts = [(*pass_over(final, xb), yb.cpu()) for xb, yb in s.data.train.rows(take)]
        want = [torch.cat([p[i] for p in parts]) for i in range(3)] + list(pass_over(final, s.data.val[0]))
        for got, expected in zip((f, z, y, *val), want, strict=True):
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
        seen.update(cached=not passes, n=len(f), val=len(val[0]))
        return (f, z, y), val

    monkeypatch.setattr(trainer, "_ood_inputs", both)
    api.train(dataset="fake:3x32x32", data_args={"classes": 3, "train": 90, "test": 30}, model="efficientnet-lite0",
              freeze=True, cache_features=True, head="exact", unfreeze_after=1, epochs=epochs, top_stages=1,
              optimizer="adamw", lr=3e-3, batch_size=32, val_size=0.2, precision="fp32", report=False,
              runs_dir=tmp_path)
    assert seen == {"cached": True, "n": 72, "val": 18}
