"""Data-parallel training through torchrun (engine/distributed.py): 2 CPU processes with gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import needs_mnist, run_cli

# every test here starts torchrun's processes (the shared fixture alone is 24 s on 2 cores): the
# slow set, which `make test-slow` (and so CI) runs
pytestmark = pytest.mark.slow

# mnist-fast on a 12 000-image subset, 2 epochs (seeds 0 and 1, scratch: 98.58/98.53 % with 1 process,
# 98.54/98.57 % with 2)
ARGS = ["--recipe", "mnist-fast", "--train-limit", "12000", "--epochs", "2", "--val-size", "0.1", "--no-report", "--json"]


def _train(tmp: Path, name: str, *extra: str, nproc: int = 1, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "smallvision", "train", *ARGS, "--runs-dir", str(tmp), "--name", name, *extra]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})


def _summary(r: subprocess.CompletedProcess[str]) -> dict:
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("ddp")
    return {"tmp": tmp, "one": _summary(_train(tmp, "one")), "two": _summary(_train(tmp, "two", nproc=2))}


@needs_mnist
def test_two_processes_learn_what_one_learns(runs):
    one, two = runs["one"], runs["two"]
    assert two["steps"] == one["steps"]  # the same global batch: the same number of optimiser steps
    assert one["test_accuracy"] > 97.5 and abs(two["test_accuracy"] - one["test_accuracy"]) < 0.6, (one, two)
    cfg = json.loads((Path(two["run_dir"]) / "config.json").read_text())
    assert cfg["resolved"]["processes"] == 2
    metrics = json.loads((Path(two["run_dir"]) / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2]  # one writer: rank 0


@needs_mnist
def test_a_distributed_checkpoint_evaluates_in_one_process(runs):
    r = run_cli("evaluate", runs["two"]["run_dir"], "--json", "--no-report")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["test_accuracy"] == pytest.approx(runs["two"]["test_accuracy"])


@needs_mnist
@pytest.mark.parametrize("first,then", [pytest.param(2, 2, marks=pytest.mark.slow), pytest.param(2, 1, marks=pytest.mark.slow),
                                        pytest.param(1, 2, marks=pytest.mark.slow)])
def test_a_killed_run_resumes_with_any_number_of_processes(first, then, runs):
    """Killed after epoch 1 (rank 0 SIGKILLed; torchrun stops the rest), resumed with 1 or 2 processes."""
    tmp, name = runs["tmp"], f"killed-{first}-{then}"
    r = _train(tmp, name, nproc=first, env={"SMALLVISION_KILL_AT": "epoch-1"})
    assert r.returncode != 0 and not (tmp / name / "summary.json").exists()
    cmd = [sys.executable, "-m", "smallvision", "train", "--resume", str(tmp / name), "--json"]
    cmd += ["--nproc", str(then)] if then > 1 else []
    s = _summary(subprocess.run(cmd, capture_output=True, text=True, timeout=600))
    assert s["epochs_run"] == 2 and s["steps"] == runs["one"]["steps"]
    ref = runs["two"] if first == 2 else runs["one"]
    assert abs(s["test_accuracy"] - ref["test_accuracy"]) < 0.6
