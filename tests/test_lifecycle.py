"""The run lifecycle (engine/run.py): phases a killed run resumes from, the folder lock, and the
settings schema's promises: --config reproduces a run bitwise, print-config round-trips, nonsense
values are refused before any work."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from conftest import run_cli, run_main
from smallvision import api
from smallvision.config import TrainConfig, read_config_file
from smallvision.engine.run import LoopState
from smallvision.errors import UsageError
from smallvision.modelfile import load_checkpoint
from smallvision.runfolder import RunFolder

ARGS = ["--dataset", "fake:1x12x12", "--data-arg", "classes=3", "--data-arg", "train=240", "--data-arg", "test=120",
        "--model", "lenet5", "--epochs", "2", "--val-size", "0.2", "--optimizer", "sgd", "--lr", "0.05"]


def _train(tmp: Path, *extra: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "smallvision", "train", *ARGS, "--runs-dir", str(tmp), "--json", *extra],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def _weights(run: Path) -> dict:
    return load_checkpoint(run / "best.safetensors")[0]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("ref")
    r = _train(tmp, "--name", "ref", "--no-report")  # its figures and weights are compared, never its report
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


# killed subprocesses and their resumes (13 s each on 2 cores): make test-slow, which CI runs
@pytest.mark.parametrize("phase", [pytest.param("trained", marks=pytest.mark.slow),
                                   pytest.param("tested", marks=pytest.mark.slow)])
def test_sigkill_in_the_final_test_or_report_then_resume_completes(phase, reference, tmp_path):
    """Killed after the loop (so during the final test) or after the test (during the report):
    --resume finishes the run with the figures of an uninterrupted one."""
    r = _train(tmp_path, "--name", "k", env={"SMALLVISION_KILL_AT": phase})
    assert r.returncode == -signal.SIGKILL
    run = tmp_path / "k"
    assert not (run / "report.html").exists()
    assert (run / "summary.json").exists() == (phase == "tested")
    r = run_cli("train", "--resume", str(run), "--json")
    assert r.returncode == 0, r.stderr
    resumed = json.loads(r.stdout.splitlines()[-1])
    for key in ("test_accuracy", "test_loss", "val_accuracy", "best_epoch", "steps", "epochs_run"):
        assert resumed[key] == reference[key], key
    assert (run / "report.html").is_file()
    assert _same(_weights(run), _weights(Path(reference["run_dir"])))
    r = run_cli("train", "--resume", str(run))  # now it is finished
    assert r.returncode == 2 and "already finished" in r.stderr


@pytest.mark.slow  # ~16 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_config_json_reproduces_the_run_bitwise(reference, tmp_path):
    r = run_cli("train", "--config", str(Path(reference["run_dir"]) / "config.json"), "--runs-dir", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout.splitlines()[-1])
    assert _same(_weights(Path(again["run_dir"])), _weights(Path(reference["run_dir"])))
    assert again["test_loss"] == reference["test_loss"]
    recorded = json.loads((Path(again["run_dir"]) / "config.json").read_text())["command"]
    assert recorded.startswith("smallvision train --config")  # the command that ran, not a reconstruction


def test_print_config_round_trips_through_config(tmp_path):
    r = run_main("print-config", "--recipe", "mnist-fast", "--set", "epochs=3", "--set", "model_args.hidden=128")
    assert r.returncode == 0, r.stderr
    (tmp_path / "mine.toml").write_text(r.stdout)
    cfg = api.make_config(config=tmp_path / "mine.toml")
    assert cfg == api.make_config("mnist-fast", epochs=3, model_args={"hidden": 128})
    assert cfg.model_args["stem"] == "patch"  # the recipe's other model options kept
    assert api.make_config(config=tmp_path / "mine.toml", lr=0.1).lr == 0.1  # flags over the file


def test_config_file_errors_are_one_line(tmp_path, capsys):
    from smallvision.cli.main import main

    (tmp_path / "bad.toml").write_text("[train]\nlearning_rate = 0.1\n")
    (tmp_path / "broken.toml").write_text("[train\n")
    for f, msg in (("bad.toml", "unknown setting 'learning_rate'; did you mean lr?"), ("broken.toml", "not valid TOML"),
                   ("missing.toml", "no such file")):
        with pytest.raises(SystemExit) as e:
            main(["train", "--config", str(tmp_path / f)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and msg in err and len(err.strip().splitlines()) == 1, err


def test_a_locked_run_folder_is_refused(reference, tmp_path):
    run = RunFolder(tmp_path / "busy")
    run.path.mkdir()
    run.lock()
    try:
        with pytest.raises(UsageError, match="in use by another smallvision process"):
            RunFolder(run.path).lock()
    finally:
        run.unlock()
    RunFolder(run.path).lock().unlock()  # free again once released


@pytest.mark.parametrize("bad", [1.5, -0.1, 2.25, float("nan")])
def test_val_size_must_be_a_fraction_or_a_whole_count(bad):
    with pytest.raises(UsageError, match="--val-size must be a fraction in \\[0, 1\\) or a whole count"):
        TrainConfig(val_size=bad).validate()
    TrainConfig(val_size=0.25).validate(), TrainConfig(val_size=500).validate(), TrainConfig(val_size=0).validate()


def test_every_setting_is_a_flag_and_changes_the_config():
    """The train flags come from the schema: each field's flag sets that field (and nothing else)."""
    from smallvision.cli.flags import setting_parameters, settings_from_flags

    names = {p.name for p in setting_parameters()}
    assert names == {f for f, fd in TrainConfig.__dataclass_fields__.items() if fd.metadata["flag"]} - {"recipe"}
    assert settings_from_flags({"model_args": ["widths=[8,16]"], "normalize": "0.5,0.25",
                                "lr": None}) == {"model_args": {"widths": [8, 16]}, "normalize": [0.5, 0.25]}


def test_advanced_settings_have_no_flag_but_reach_the_config_and_the_reproduce_line():
    """The schedules' parameters are set with --set (or a recipe), and the report's Reproduce line
    says so: a run with a non-default gamma is repeated by its own line."""
    import shlex

    from smallvision.cli.flags import parse_sets, setting_parameters
    from smallvision.engine.trainer import reproduce_command

    advanced = {f for f, fd in TrainConfig.__dataclass_fields__.items() if fd.metadata["advanced"]}
    assert {"gamma", "milestones", "step_size", "data_order"} <= advanced
    assert not advanced & {p.name for p in setting_parameters()}
    cfg = api.make_config("mnist-fast", **parse_sets(["gamma=0.5", "milestones=[3, 9]"]), scheduler="multistep")
    line = reproduce_command(cfg.to_dict())
    assert "--set gamma=0.5" in line and "--gamma" not in line
    args = shlex.split(line)[2:]
    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    assert api.make_config("mnist-fast", **parse_sets(sets), scheduler="multistep") == cfg


def test_result_changing_settings_are_refused_on_resume_and_others_allowed(reference):
    from smallvision.engine.resume import check_compatible

    saved = json.loads((Path(reference["run_dir"]) / "config.json").read_text())
    check_compatible(saved, {**saved, "max_time": 5, "threads": 1, "device": "cpu", "report": False})
    with pytest.raises(UsageError, match="changed 'data_args'"):
        check_compatible(saved, {**saved, "data_args": {"classes": 4}})


def test_old_resume_state_reads_as_finished():
    old = {"epoch": 3, "step": 10, "history": [], "finished": "completed all epochs"}  # before phases existed
    s = LoopState.from_dict(old)
    assert s.phase == "reported" and s.stopped == "completed all epochs" and s.step == 10


def test_read_config_file_skips_what_a_run_records(reference):
    settings = read_config_file(Path(reference["run_dir"]))  # a run folder means its config.json
    assert "command" not in settings and "resolved" not in settings and settings["model"] == "lenet5"
