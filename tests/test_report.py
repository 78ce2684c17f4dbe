"""Reports, evaluate, compare, show and lr-find, checked against independent computations."""

import json

import numpy as np
import pytest
import torch

from conftest import run_cli
from smallvision import api
from smallvision.compare import compare, read_run
from smallvision.report.metrics import classification_metrics

FAKE = "fake:1x16x16,classes=3,train=240,test=90"


def test_metrics_match_an_independent_computation():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 4, generator=g)
    target = torch.randint(0, 4, (500,), generator=g)
    m = classification_metrics(logits, target, 4)
    pred = logits.argmax(1).numpy()
    t = target.numpy()
    cm = np.zeros((4, 4), int)
    for a, b in zip(t, pred, strict=True):
        cm[a, b] += 1
    assert np.array_equal(m.confusion.numpy(), cm)
    assert m.confusion.sum() == 500 and m.accuracy == pytest.approx(100 * np.trace(cm) / 500)
    for k in range(4):
        prec = cm[k, k] / max(cm[:, k].sum(), 1)
        rec = cm[k, k] / max(cm[k].sum(), 1)
        assert float(m.precision[k]) == pytest.approx(prec, abs=1e-6)
        assert float(m.recall[k]) == pytest.approx(rec, abs=1e-6)
        assert float(m.f1[k]) == pytest.approx(2 * prec * rec / (prec + rec), abs=1e-6)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    t0, p0, c0 = m.most_confused[0]
    assert c0 == off.max() and off[t0, p0] == c0
    losses = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    assert m.top_losses[0][0] == int(losses.argmax()) and m.loss == pytest.approx(float(losses.mean()), rel=1e-5)


def test_training_writes_a_consistent_report(runs_dir):
    r = api.train(runs_dir=runs_dir, dataset=FAKE, model="cnn-fast", epochs=2, lr=0.02,
                  model_args={"widths": [8, 16]})
    d = r.run_dir
    for f in ("report.html", "report.md", "report.json", "curves.png", "confusion.png", "top_losses.png"):
        assert (d / f).is_file() and (d / f).stat().st_size > 0, f
    rep = json.loads((d / "report.json").read_text())
    cm = np.array(rep["confusion_matrix"])
    assert cm.sum() == 90 == rep["metrics"]["images"]
    assert 100 * np.trace(cm) / cm.sum() == pytest.approx(r.summary["test_accuracy"], abs=1e-3)
    assert [row["support"] for row in rep["per_class"]] == cm.sum(1).tolist()
    assert rep["class_names"] == ["class0", "class1", "class2"]
    assert rep["reproduce"].startswith("smallvision train --dataset") and "--epochs 2" in rep["reproduce"]
    html = (d / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "src=\"http" not in html  # self-contained
    assert "class2" in (d / "report.md").read_text()


def test_evaluate_writes_the_same_report_for_another_split(runs_dir):
    r = api.train(runs_dir=runs_dir, dataset=FAKE, model="lenet5", epochs=1, val_size=30, report=False)  # evaluate's own
    ev = api.evaluate(r.run_dir, split="val")
    rep = json.loads((r.run_dir / "eval-fake_1x16x16_classes_3_train_240_test_90-val" / "report.json").read_text())
    assert ev["images"] == 30 and np.array(rep["confusion_matrix"]).sum() == 30
    assert rep["metrics"]["accuracy"] == pytest.approx(ev["val_accuracy"], abs=1e-3)


def test_compare_recipes_over_seeds_and_run_folders(tmp_path):
    # no per-run report (a report costs seconds of plotting; the table reads summaries and histories)
    over = {"dataset": FAKE, "epochs": 2, "val_size": 30, "batch_size": 32, "report": False}
    rows, out = compare(["seed-mnist-mlp-plain", "seed-mnist-mlp-batchnorm"], seeds=2, out=tmp_path / "cmp",
                        overrides=over)
    assert [r["name"] for r in rows] == ["seed-mnist-mlp-plain", "seed-mnist-mlp-batchnorm"]
    assert all(r["runs"] == 2 for r in rows)
    runs = sorted((out / "runs").iterdir())
    accs = [read_run(p).summary["test_accuracy"] for p in runs if "batchnorm" in p.name]
    assert rows[1]["test_accuracy_mean"] == pytest.approx(np.mean(accs), abs=1e-3)
    assert rows[1]["test_accuracy_std"] == pytest.approx(np.std(accs, ddof=1), abs=1e-3)
    for f in ("compare.md", "compare.json", "compare.png"):
        assert (out / f).is_file()
    rows2, _ = compare(runs=runs, out=tmp_path / "cmp2")  # reading finished runs gives the same table
    assert sorted(rows2, key=lambda r: r["name"]) == sorted(rows, key=lambda r: r["name"])


@pytest.mark.slow  # two real-data CLI runs (12 s): make test-slow, run by CI
def test_show_and_lr_find(tmp_path):
    r = run_cli("show", "digits", "--out", str(tmp_path / "show"), "--per-class", "4")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "show" / "samples.png").is_file() and "1797" not in r.stdout and "digits:" in r.stdout
    lines = (tmp_path / "show" / "balance.txt").read_text().splitlines()
    assert sum(int(line.split()[1]) for line in lines[2:]) == 1438  # 1797 minus the 359-image test split
    r = run_cli("lr-find", "--dataset", "digits", "--model", "cnn-fast", "--set", "optimizer=\"sgd\"",
                "--set", "momentum=0.9", "--steps", "40", "--out", str(tmp_path / "lr"), "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert (tmp_path / "lr" / "lr_find.png").is_file()
    # the suggestion is a rate the range test tried, on the falling part of the curve: before the
    # loss's minimum, at a loss below the starting one (sgd on digits learns at ~1e-2..1)
    curve = json.loads((tmp_path / "lr" / "lr_find.json").read_text())
    lrs, losses = curve["lrs"], curve["losses"]
    i = lrs.index(res["suggested_lr"])
    assert res["suggested_lr"] <= res["min_loss_lr"] and losses[i] < losses[0]
    assert 1e-4 < res["suggested_lr"] < 3


def test_tensorboard_event_files(runs_dir):
    r = api.train(runs_dir=runs_dir, dataset=FAKE, epochs=1, tensorboard=True, report=False)
    assert any(p.name.startswith("events.out.tfevents") for p in (r.run_dir / "tensorboard").iterdir())
