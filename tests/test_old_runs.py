"""Run folders written by an earlier version keep working: a classifier run of smallvision 0.1
(da0698c: a small cnn-fast on the 8×8 digits, 7 epochs, stopped by SIGTERM in epoch 6) predicts,
evaluates and resumes to its end with this version. (The generative one, a 0.1 GAN run with its
removed settings recorded: tests/test_generative.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_main

OLD_RUN = Path(__file__).parent / "fixtures" / "cls-v0.1"


@pytest.mark.slow  # ~9 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_a_classifier_run_of_version_0_1_predicts_evaluates_and_resumes(tmp_path):
    from PIL import Image

    from smallvision.data import load_dataset

    run = tmp_path / "cls-v0.1"
    shutil.copytree(OLD_RUN, run)
    data = load_dataset("digits")
    files = []
    for i in range(4):
        f = tmp_path / f"d{i}.png"
        Image.fromarray(data.test_x[i, 0].numpy()).save(f)
        files.append(str(f))
    r = run_main("predict", str(run), *files, "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.strip().splitlines()]  # one JSON line per image
    assert len(rows) == 4 and all(row["label"] in [str(c) for c in range(10)] for row in rows)

    r = run_main("evaluate", str(run), "--dataset", "digits", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["test_accuracy"] > 30  # 5 epochs: far above chance (10 %)

    r = run_main("train", "--resume", str(run), "--json")
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout.strip().splitlines()[-1])
    assert done["epochs_run"] == 7 and (run / "report.html").is_file()
