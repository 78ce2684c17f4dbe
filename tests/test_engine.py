"""The training loop, schedules, optimisers, stop rules and checkpoints, on small data."""

import json
import pickle

import pytest
import torch

from conftest import needs_mnist
from smallvision import api
from smallvision.config import TrainConfig
from smallvision.errors import CheckpointError, DivergenceError, UsageError
from smallvision.modelfile import load_checkpoint, load_model, save_checkpoint
from smallvision.optim import lr_at

FAKE = "fake:1x12x12,classes=4,train=400,test=100"


def small(**kw):
    base = dict(dataset=FAKE, model="cnn-fast", epochs=2, batch_size=32, lr=0.05, optimizer="sgd", momentum=0.9,
                val_size=80, model_args={"widths": [8, 16]}, report=False)
    return {**base, **kw}


def test_fit_learns_and_writes_the_run_folder(runs_dir):
    r = api.train(runs_dir=runs_dir, **small(epochs=3, report=True))
    s = r.summary
    assert s["test_accuracy"] > 80  # chance is 25 %
    for f in ("config.json", "metrics.csv", "metrics.json", "best.safetensors", "last.safetensors", "summary.json"):
        assert (r.run_dir / f).is_file(), f
    hist = json.loads((r.run_dir / "metrics.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3] and hist[-1]["val_accuracy"] is not None
    assert hist[-1]["test_accuracy"] is None  # the test set is not looked at per epoch unless asked
    assert json.loads((r.run_dir / "summary.json").read_text())["test_accuracy"] == s["test_accuracy"]
    assert s["images_per_second"] > 0 and s["train_seconds"] > 0
    stages = s["stage_seconds"]  # where the time went: each stage timed, training as train_seconds
    assert list(stages) == ["setup", "train", "test", "calibration", "none_of_these"]
    assert all(v >= 0 for v in stages.values()) and stages["train"] == pytest.approx(s["train_seconds"], abs=0.01)


def test_freeze_keeps_the_backbone_until_unfreeze_after(runs_dir, capsys):
    from smallvision.modelfile import load_checkpoint

    def weights(r):
        return load_checkpoint(r.run_dir / "last.safetensors")[0]

    # two frozen runs from the same seeded start at different learning rates: the same backbone
    # (weights and BatchNorm statistics), different heads
    a = weights(api.train(runs_dir=runs_dir, **small(epochs=1, freeze=True, name="a")))
    b = weights(api.train(runs_dir=runs_dir, **small(epochs=1, freeze=True, lr=0.01, name="b")))
    feats = [k for k in a if k.startswith("features.")]
    assert feats and all(torch.equal(a[k], b[k]) for k in feats)
    assert not torch.equal(a["head.weight"], b["head.weight"])
    capsys.readouterr()
    c = weights(api.train(runs_dir=runs_dir, **small(epochs=2, freeze=True, unfreeze_after=1, name="c")))
    assert "epoch 2: backbone unfrozen" in capsys.readouterr().err
    assert not all(torch.equal(a[k], c[k]) for k in feats)  # epoch 2 trained the backbone too


def test_same_seed_same_weights(runs_dir):
    a = api.train(runs_dir=runs_dir, deterministic=True, **small(epochs=1))
    b = api.train(runs_dir=runs_dir, deterministic=True, **small(epochs=1))
    wa, _ = load_checkpoint(a.run_dir / "last.safetensors")
    wb, _ = load_checkpoint(b.run_dir / "last.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_schedules_as_functions_of_the_step():
    c = TrainConfig(lr=1.0, epochs=10, scheduler="step", step_size=3, gamma=0.1)
    assert lr_at(c, 0, 100) == 1.0 and lr_at(c, 299, 100) == 1.0 and lr_at(c, 300, 100) == pytest.approx(0.1)
    c = TrainConfig(lr=1.0, epochs=100, scheduler="multistep", milestones=[30, 80], gamma=0.1)
    assert lr_at(c, 29, 1) == 1.0 and lr_at(c, 30, 1) == pytest.approx(0.1) and lr_at(c, 80, 1) == pytest.approx(0.01)
    c = TrainConfig(lr=2.0, epochs=10, scheduler="onecycle", pct_start=0.3)
    lrs = [lr_at(c, s, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.08) and max(lrs) == pytest.approx(2.0, rel=0.05) and lrs[-1] < 0.05
    assert lrs.index(max(lrs)) == 30
    c = TrainConfig(lr=1.0, epochs=10, scheduler="cosine", warmup_epochs=1)
    assert lr_at(c, 0, 10) == pytest.approx(0.1) and lr_at(c, 9, 10) == pytest.approx(1.0)
    assert lr_at(c, 99, 10) < 0.01


def test_full_batch_mode(runs_dir):
    r = api.train(runs_dir=runs_dir, **small(batch_size=0, epochs=6, eval_every=3, lr=0.1))
    assert r.summary["steps"] == 6 and len(r.history) == 2


def test_target_accuracy_and_patience_stop_early(runs_dir):
    r = api.train(runs_dir=runs_dir, **small(epochs=20, target_accuracy=60))
    assert r.summary["epochs_run"] < 20 and "target" in r.summary["stopped"]
    r = api.train(runs_dir=runs_dir, **small(epochs=30, patience=1, lr=1e-6))
    assert r.summary["epochs_run"] < 30 and "early stop" in r.summary["stopped"]
    with pytest.raises(UsageError, match="validation"):
        api.train(runs_dir=runs_dir, **small(val_size=0, patience=2))


def test_max_time_stops(runs_dir):
    r = api.train(runs_dir=runs_dir, **small(epochs=500, max_time=0.5))
    assert r.summary["epochs_run"] < 500 and "time limit" in r.summary["stopped"]


def test_divergence_is_caught_with_the_step(runs_dir):
    with pytest.raises(DivergenceError, match=r"step \d+.*learning rate"):
        api.train(runs_dir=runs_dir, **small(lr=1e12, optimizer="sgd", momentum=0, model="seed-mlp-plain", model_args={}))


@pytest.mark.parametrize("kw,msg", [
    (dict(lr=0), "--lr must be > 0"), (dict(batch_size=-1), "batch-size"), (dict(epochs=0), "--epochs"),
    (dict(device="tpu"), "--device"), (dict(val_size=-1), "val-size"), (dict(label_smoothing=1.5), "label-smoothing"),
])
def test_impossible_hyperparameters(runs_dir, kw, msg):
    with pytest.raises(UsageError, match=msg):
        api.train(runs_dir=runs_dir, **small(**kw))


def test_checkpoint_is_self_describing_and_reloads(runs_dir):
    r = api.train(runs_dir=runs_dir, **small(epochs=1))
    model, meta = load_model(r.run_dir)
    assert meta["model"] == "cnn-fast" and meta["dataset"]["num_classes"] == 4
    assert meta["config"]["lr"] == 0.05 and "torch" in meta["versions"] and meta["dataset"]["class_names"][0] == "class0"
    ev = api.evaluate(r.run_dir)
    assert ev["test_accuracy"] == pytest.approx(r.summary["test_accuracy"])
    assert api.evaluate(r.run_dir, split="val")["images"] == 80


def test_corrupt_truncated_and_pickled_checkpoints_are_refused(tmp_path):
    state = {"w": torch.arange(1000, dtype=torch.float32)}
    p = tmp_path / "c.safetensors"
    save_checkpoint(p, state, {"model": "x"})
    blob = bytearray(p.read_bytes())
    blob[-10] ^= 0x01  # one flipped bit in the tensor data
    (tmp_path / "flip.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(tmp_path / "flip.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(p.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="corrupt|truncated"):
        load_checkpoint(tmp_path / "cut.safetensors")

    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"state": Boom()}))
    with pytest.raises(CheckpointError, match="not a smallvision checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_evaluate_refuses_incompatible_data(runs_dir):
    r = api.train(runs_dir=runs_dir, **small(epochs=1))
    with pytest.raises(UsageError, match="images are 1×28×28 but the model takes 1×12×12"):
        api.evaluate(r.run_dir, dataset="fake")
    with pytest.raises(UsageError, match="10 classes but the model predicts 4"):
        api.evaluate(r.run_dir, dataset="fake:1x12x12,classes=10")


@pytest.mark.slow  # a real-data accuracy threshold: make test-all
@needs_mnist
def test_real_mnist_subset_learns(runs_dir):
    """A short real-data run: 6 000 MNIST images, three epochs, must clearly learn."""
    r = api.train("mnist-fast", runs_dir=runs_dir, train_limit=6000, epochs=3, batch_size=64, val_size=500)
    assert r.summary["test_accuracy"] > 93.0, r.summary


def test_tta_averages_the_image_and_its_mirror_and_travels_with_the_checkpoint(runs_dir):
    r = api.train(runs_dir=runs_dir, **small(epochs=1, hflip=True, tta=True))
    model, _ = load_model(r.run_dir)
    assert model.tta  # evaluate/predict see what the run's test saw
    x = torch.randn(5, 1, 12, 12)
    with torch.no_grad():
        model.tta = False
        plain, mirrored = model(x), model(x.flip(-1))
        model.tta = True
        both = model(x)
    assert torch.allclose(both, (plain + mirrored) / 2, atol=1e-5)
    assert not torch.allclose(both, plain, atol=1e-3)
    assert api.evaluate(r.run_dir, report=False)["test_accuracy"] == pytest.approx(r.summary["test_accuracy"])


def test_tta_views_follow_the_training_augmentation():
    from smallvision.data.augment import tta_views

    assert tta_views(0, False, "none") == ((0, 0, False), (0, 0, True))  # plain --tta: the mirror
    assert tta_views(0, True, "none") == ((0, 0, False), (0, 0, True))
    digits = tta_views(0, False, "digits")  # shifts/zooms, never a mirror for digits
    assert len(digits) == 5 and not any(m for *_, m in digits) and (1, 0, False) in digits and (0, -1, False) in digits
    clothes = tta_views(2, True, "none")
    assert len(clothes) == 10 and sum(m for *_, m in clothes) == 5 and (-1, 0, True) in clothes
    assert tta_views(0, False, "photo") == clothes  # the preset's crops and mirrors


def test_shifted_tta_averages_one_pixel_shifts_and_travels_with_the_checkpoint(runs_dir):
    from smallvision.models.base import shifted_view

    x = torch.arange(16.0).view(1, 1, 4, 4)
    down = shifted_view(x, 1, 0, False)  # row 0 repeats (border), rows move down one
    assert torch.equal(down[0, 0, 0], x[0, 0, 0]) and torch.equal(down[0, 0, 1:], x[0, 0, :3])
    left = shifted_view(x, 0, -1, True)  # shifted left one, then mirrored
    assert torch.equal(left.flip(-1)[0, 0, :, :3], x[0, 0, :, 1:])

    r = api.train(runs_dir=runs_dir, **small(epochs=1, shift=2, tta=True))
    model, _ = load_model(r.run_dir)
    assert len(model.tta_views) == 5
    xb = torch.randn(6, 1, 12, 12)
    with torch.no_grad():
        views = model.tta_views
        model.tta = False
        by_hand = sum(model(shifted_view(xb, *v)) for v in views) / 5
        model.tta = views
        assert torch.allclose(model(xb), by_hand, atol=1e-5)
    assert api.evaluate(r.run_dir, report=False)["test_accuracy"] == pytest.approx(r.summary["test_accuracy"])


def test_ensemble_averages_member_probabilities(runs_dir):
    s = api.train_ensemble(k=3, runs_dir=runs_dir, **small(epochs=1, seed=7))
    assert s["members"] == 3 and len(s["member_runs"]) == 3
    cfgs = [json.loads((runs_dir / s["run"] / f"member-{i}" / "config.json").read_text()) for i in (1, 2, 3)]
    assert [c["seed"] for c in cfgs] == [7, 8, 9]
    # recompute the ensemble from the members' saved checkpoints, independently of train_ensemble
    from smallvision.data import load_dataset

    data = load_dataset(FAKE)
    x = (data.test_x.float() / 255 - torch.tensor(load_model(s["member_runs"][0])[0].mean).view(1, -1, 1, 1)) \
        / torch.tensor(load_model(s["member_runs"][0])[0].std).view(1, -1, 1, 1)
    with torch.no_grad():
        probs = torch.stack([load_model(run)[0](x).softmax(1) for run in s["member_runs"]]).mean(0)
    expected = 100.0 * float((probs.argmax(1) == data.test_y).float().mean())
    assert s["test_accuracy"] == pytest.approx(expected, abs=1e-3)
    assert min(s["member_accuracies"]) == s["member_accuracy_min"]
    with torch.no_grad():
        member_preds = [load_model(run)[0](x).argmax(1) for run in s["member_runs"]]
    wrong = torch.stack([p != data.test_y for p in member_preds])
    assert s["errors"] == int((probs.argmax(1) != data.test_y).sum())
    assert s["errors_of_every_member"] == int(wrong.all(0).sum())
    assert s["errors_of_some_member"] == int(wrong.any(0).sum()) >= s["errors"]  # all members right: so is the mean
    # the same ensemble from the saved runs (`smallvision ensemble RUN...`) gives the same figures
    e = api.evaluate_ensemble(s["member_runs"])
    assert e["members"] == 3 and e["images"] == len(data.test_y)
    for key in ("test_accuracy", "errors", "errors_of_every_member", "errors_of_some_member", "member_accuracies"):
        assert e[key] == s[key], key
    with pytest.raises(UsageError, match="2 or more"):
        api.evaluate_ensemble(s["member_runs"][:1])
    with pytest.raises(UsageError, match="K ≥ 2"):
        api.train_ensemble(k=1, runs_dir=runs_dir, **small())


def test_fast_precision_respects_an_isa_cap(monkeypatch):
    """ONEDNN_MAX_CPU_ISA below AVX512_CORE_BF16 (a laptop-class CPU, or this one run as one): bf16
    would be emulated, so `fast` picks fp32 (benchmarks/isa.py measures both on each cap)."""
    from smallvision.engine import device as dev

    assert not dev.isa_allows_bf16("AVX2") and not dev.isa_allows_bf16("avx512_core")
    assert dev.isa_allows_bf16("AVX512_CORE_BF16") and dev.isa_allows_bf16("AVX512_CORE_AMX")
    assert dev.isa_allows_bf16("") and dev.isa_allows_bf16("not-an-isa")  # no cap, or one oneDNN ignores
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    server = "flags : fpu sse avx2 avx512f avx512_bf16 amx_tile"
    assert dev.cpu_has_native_bf16(server) and not dev.cpu_has_native_bf16("flags : fpu sse avx2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not dev.cpu_has_native_bf16(server)
    assert dev.autocast_for(torch.device("cpu"), "fast")[1] == "fp32"  # this machine, capped


def test_class_weights_rules_and_errors():
    from smallvision.data.loader import class_weights

    y = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)
    assert class_weights("none", y, 3) is None
    w = class_weights("auto", y, 3)
    counts = torch.bincount(y, minlength=3).float()
    assert w[0] < w[1] < w[2]  # rarer classes weigh more
    assert float((w * counts).sum() / len(y)) == pytest.approx(1.0, abs=1e-5)  # the average image keeps weight 1
    assert float(w[2] / w[0]) == pytest.approx(((100 / 6) / (100 / 273)) ** 0.5, rel=1e-4)  # sqrt of inverse frequency
    assert class_weights("1,2,3", y, 3).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(UsageError, match="2 weights for 3 classes"):
        class_weights("1,2", y, 3)


def test_class_weights_reach_the_loss(tmp_path):
    from smallvision import api
    from smallvision.errors import UsageError as UE

    common = dict(dataset="fake:1x8x8", data_args={"classes": 3, "train": 90, "test": 30}, model="seed-mlp-plain",
                  epochs=1, val_size=0, runs_dir=tmp_path, report=False, seed=0)
    plain = api.train(**common, name="plain").history[-1]["train_loss"]
    heavy = api.train(**common, class_weights="1,1,50", name="heavy").history[-1]["train_loss"]
    assert heavy != pytest.approx(plain, rel=1e-3)
    with pytest.raises(UE, match="class-weights"):
        api.train(**common, class_weights="heavy", name="bad")


def test_balanced_sampler_draws_every_class_alike_and_is_seeded():
    from smallvision.data.loader import TensorLoader, balanced_weights

    y = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    x = torch.arange(len(y)).float()[:, None]
    loader = TensorLoader(x, y, 100, shuffle=True, seed=3, sample_weights=balanced_weights(y, 3))
    drawn = torch.cat([yb for _, yb in loader.batches(0)])
    assert len(drawn) == len(y)  # the epoch keeps its length
    share = torch.bincount(drawn, minlength=3).float() / len(drawn)
    assert share.min() > 0.27 and share.max() < 0.39  # each class about a third (plain shuffling: 1 % for class 2)
    again = torch.cat([yb for _, yb in loader.batches(0)])
    assert torch.equal(drawn, again)  # a pure function of (seed, epoch): an exact resume replays it
    other = torch.cat([xb for xb, _ in loader.batches(1)])
    assert not torch.equal(torch.cat([xb for xb, _ in loader.batches(0)]), other)
    resumed = torch.cat([yb for _, yb in loader.batches(0, start_step=4)])
    assert torch.equal(resumed, drawn[400:])


@pytest.mark.slow  # ~4 CPU-s: the default suite stays under 2 min 30 s on 2 cores (CI runs make test-slow)
def test_balanced_sampler_trains_and_the_report_shows_training_counts(tmp_path):
    from smallvision import api

    r = api.train(dataset="fake:1x8x8", data_args={"classes": 3, "train": 120, "test": 30}, model="seed-mlp-plain",
                  epochs=1, val_size=0, runs_dir=tmp_path, sampler="balanced", name="bal", seed=0)
    doc = json.loads((r.run_dir / "report.json").read_text())
    assert sum(row["train images"] for row in doc["per_class"]) == 120
    assert doc["config"]["sampler"] == "balanced"
    with pytest.raises(UsageError, match="sampler"):
        api.train(dataset="fake:1x8x8", model="seed-mlp-plain", epochs=1, runs_dir=tmp_path, sampler="rare", name="x")
