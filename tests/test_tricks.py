"""Training tricks: mixup / CutMix mix images and labels alike and are seeded; distillation
teaches a student what its teacher knows, even with the labels' term switched off."""

import numpy as np
import pytest
import torch

from conftest import run_main
from smallvision import api
from smallvision.data import load_dataset
from smallvision.data.augment import mix_batch
from smallvision.engine.distill import load_teachers
from smallvision.modelfile import load_model


def test_mixup_blends_each_image_with_its_partner():
    x = torch.rand(16, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    mixed, partner, lam = mix_batch(x, g, mixup=0.4, cutmix=0.0)
    assert 0 < lam < 1 and sorted(partner.tolist()) == list(range(16))
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[partner])
    again = mix_batch(x, torch.Generator().manual_seed(0), mixup=0.4, cutmix=0.0)
    assert torch.equal(again[0], mixed) and again[2] == lam  # seeded: a resumed run mixes alike


def test_cutmix_pastes_a_box_whose_area_is_one_minus_lambda():
    x = torch.arange(2 * 3 * 20 * 20, dtype=torch.float32).view(2, 3, 20, 20)  # every pixel distinct
    for seed in range(20):
        mixed, partner, lam = mix_batch(x, torch.Generator().manual_seed(seed), mixup=0.0, cutmix=1.0)
        kept = (mixed == x).all(1).float().mean(dim=(1, 2))  # share of each image's pixels left as they were
        swapped = partner != torch.arange(2)
        assert torch.allclose(kept[swapped], torch.tensor(lam), atol=1e-6)
        assert bool(((mixed == x) | (mixed == x[partner])).all())  # a pixel is its own or its partner's


def test_with_both_on_each_batch_takes_one_of_them():
    x = torch.rand(8, 1, 16, 16)
    kinds = set()
    for seed in range(40):
        mixed, partner, lam = mix_batch(x, torch.Generator().manual_seed(seed), mixup=0.4, cutmix=1.0)
        blended = torch.allclose(mixed, lam * x + (1 - lam) * x[partner])
        kinds.add("mixup" if blended else "cutmix")
    assert kinds == {"mixup", "cutmix"}


def test_mixed_training_changes_the_loss_and_is_deterministic(tmp_path):
    common = dict(dataset="digits", model="cnn-fast", model_args={"widths": [8, 16]}, epochs=2, batch_size=64,
                  lr=3e-3, val_size=0, runs_dir=tmp_path, report=False)
    plain = api.train(**common, name="plain").history
    mixed = [api.train(**common, mixup=0.4, cutmix=1.0, name=f"mix{i}").history for i in range(2)]
    assert mixed[0][-1]["train_loss"] != pytest.approx(plain[-1]["train_loss"], rel=1e-3)
    assert [h["train_loss"] for h in mixed[0]] == [h["train_loss"] for h in mixed[1]]  # same seed, same mixing


def _scrambled(tmp_path):
    """digits with the training labels shuffled (test labels true): only a teacher can teach it."""
    d = load_dataset("digits")
    rng = np.random.default_rng(0)
    path = tmp_path / "scrambled.npz"
    np.savez(path, x_train=d.train_x[:, 0].numpy(), y_train=rng.permutation(d.train_y.numpy()),
             x_test=d.test_x[:, 0].numpy(), y_test=d.test_y.numpy())
    return path


@pytest.mark.slow  # ~10 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_distillation_teaches_what_the_labels_do_not(tmp_path):
    teacher = api.train(dataset="digits", model="cnn-fast", model_args={"widths": [16, 32]}, epochs=8, batch_size=32,
                        lr=3e-3, val_size=0, runs_dir=tmp_path, report=False, name="teacher")
    assert teacher.summary["test_accuracy"] > 85
    student = dict(dataset=f"npz:{_scrambled(tmp_path)}", model="seed-mlp-plain", epochs=15, batch_size=32, lr=3e-3,
                   val_size=0, runs_dir=tmp_path, report=False)
    # the npz set is normalised by its own statistics, the teacher by digits' (the same pixels): remapped
    labels_only = api.train(**student, name="labels-only").summary["test_accuracy"]
    taught = api.train(**student, teacher=[str(teacher.run_dir)], distill_alpha=1.0, name="taught").summary
    assert labels_only < 30  # scrambled labels teach nothing
    assert taught["test_accuracy"] > 80  # the teacher's soft targets alone do


def test_a_teacher_sees_its_own_normalisation(tmp_path):
    run = api.train(dataset="digits", model="seed-mlp-plain", epochs=1, val_size=0, runs_dir=tmp_path, report=False,
                    normalize=[0.5, 0.25], name="t").run_dir
    info = load_dataset("digits").info  # the student's statistics differ from the teacher's 0.5 / 0.25
    teachers = load_teachers([str(run)], info, torch.device("cpu"), temperature=1.0)
    model, _ = load_model(run, "cpu")
    pixels = torch.rand(4, 1, 8, 8)
    student_x = (pixels - info.mean[0]) / info.std[0]
    with torch.no_grad():
        want = model.float().eval()((pixels - 0.5) / 0.25).softmax(1)
    assert torch.allclose(teachers.probs(student_x), want, atol=1e-5)


def test_teacher_errors_are_one_line(tmp_path):
    digits = api.train(dataset="digits", model="seed-mlp-plain", epochs=1, val_size=0, runs_dir=tmp_path,
                       report=False, name="digits").run_dir
    fake = api.train(dataset="fake:1x8x8", data_args={"classes": 3}, model="seed-mlp-plain", epochs=1, val_size=0,
                     runs_dir=tmp_path, report=False, name="three").run_dir
    r = run_main("train", "--dataset", "digits", "--model", "seed-mlp-plain", "--epochs", "1", "--teacher", str(fake),
                 "--runs-dir", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "a teacher must know the student's classes" in r.stderr
    rng = np.random.default_rng(0)  # the same ten classes (0-9) at 12×12
    arrays = {k: rng.integers(0, 255, (50, 12, 12), dtype=np.uint8) for k in ("x_train", "x_test")}
    np.savez(tmp_path / "big.npz", **arrays, y_train=np.arange(50) % 10, y_test=np.arange(50) % 10)
    r = run_main("train", "--dataset", f"npz:{tmp_path / 'big.npz'}", "--model", "seed-mlp-plain",
                 "--epochs", "1", "--teacher", str(digits), "--runs-dir", str(tmp_path))
    assert r.returncode == 2 and "takes 1×8×8 images" in r.stderr
    r = run_main("train", "--dataset", "digits", "--teacher", str(tmp_path / "nowhere"), "--runs-dir", str(tmp_path))
    assert r.returncode == 2 and "no such checkpoint" in r.stderr and r.stderr.count("\n") == 1


def test_checkpoint_averaging_saves_the_mean_of_the_last_epochs_and_reports_its_validation(tmp_path):
    """--average-last K: K = 1 keeps the last epoch's weights; K = 2 saves the mean of the last two
    (neither epoch's own weights), and the summary's validation accuracy is that average's, as
    `evaluate --split val` measures it again."""
    from smallvision.modelfile import load_checkpoint

    common = dict(dataset="digits", model="cnn-fast", model_args={"widths": [8, 16]}, epochs=3, batch_size=64,
                  lr=3e-3, val_size=0.2, runs_dir=tmp_path, report=False, calibrate=False)
    one = api.train(**common, average_last=1, name="one")
    best, meta = load_checkpoint(one.run_dir / "best.safetensors")
    last = load_checkpoint(one.run_dir / "last.safetensors")[0]
    assert meta["averaged_epochs"] == 1 and all(torch.equal(best[k], last[k]) for k in best)
    two = api.train(**common, average_last=2, name="two")
    best, meta = load_checkpoint(two.run_dir / "best.safetensors")
    last = load_checkpoint(two.run_dir / "last.safetensors")[0]
    assert meta["averaged_epochs"] == 2 and not all(torch.equal(best[k], last[k]) for k in best)
    again = api.evaluate(two.run_dir, split="val", report=False)
    assert two.summary["val_accuracy"] == pytest.approx(again["val_accuracy"], abs=1e-3)
    assert two.summary["val_accuracy"] != one.summary["val_accuracy"]  # the average, not the last epoch
