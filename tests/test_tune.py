"""`smallvision tune`: the search space grammar, trials that choose on validation and never read the
test set, the tuned recipe file, the single final test, and parallel trials in worker processes."""

import json
import tomllib

import pytest

from smallvision.api import make_config
from smallvision.errors import UsageError
from smallvision.tune import Param, parse_space, plan_jobs, tune

DIGITS = dict(dataset="digits", model="cnn-fast", optimizer="sgd", momentum=0.9, lr=0.05, batch_size=64)


def test_space_grammar():
    base = make_config(None, None, lr=0.1, epochs=2)
    got = {p.name: p for p in parse_space("lr, weight_decay=log:1e-5:1e-2,epochs=int:1:4,optimizer=sgd|adamw,"
                                          "label-smoothing=float:0:0.3", base)}
    assert got["lr"] == Param("lr", "log", pytest.approx(0.01), pytest.approx(0.3))  # around the recipe's own lr
    assert got["weight_decay"] == Param("weight_decay", "log", 1e-5, 1e-2)
    assert got["epochs"] == Param("epochs", "int", 1, 4)
    assert got["optimizer"].choices == ("sgd", "adamw") and got["label_smoothing"].high == 0.3
    for bad, words in [("learning_rate", "did you mean lr"), ("lr=log:0:1", "LOW > 0"), ("lr=log:1:0.1", "LOW < HIGH"),
                       ("lr=cubic:1:2", "kind must be"), ("epochs=int:1", "int:LOW:HIGH"), ("test", "not something"),
                       ("val_size", "not something"), ("lr,lr", "twice"), ("", "no settings"), ("momentum=x:y:z", "kind"),
                       ("freeze", "no default range")]:
        with pytest.raises(UsageError, match=words):
            parse_space(bad, base)


def test_plan_jobs_uses_parallel_trials_only_when_cores_allow():
    assert plan_jobs(0, cores=2) == (1, 0)  # 2 cores: one trial at a time, all threads
    assert plan_jobs(0, cores=8) == (4, 2)
    assert plan_jobs(2, cores=2) == (2, 1)
    with pytest.raises(UsageError):
        plan_jobs(-1)


@pytest.mark.slow  # ~6 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_trials_choose_on_validation_and_only_the_final_run_reads_the_test_set(tmp_path):
    recipe = make_config(None, None, epochs=2, val_size=0, **DIGITS)  # a recipe that trains on everything
    r = tune(config=recipe, space="lr,label_smoothing", trials=4, runs_dir=tmp_path, name="t", prune=False,
             log=lambda m: None)
    trials = sorted((tmp_path / "t" / "trials").iterdir())
    assert len(trials) == 4
    for t in trials:
        summary = json.loads((t / "summary.json").read_text())
        assert summary["test_accuracy"] is None and summary["val_accuracy"] is not None
        assert not (t / "report.html").exists()
        assert json.loads((t / "config.json").read_text())["val_size"] == 0.1  # the trials' split
    assert r.trials[0]["lr"] == 0.05 and r.trials[0]["label_smoothing"] == 0.0  # trial 0: the recipe's own
    vals = [row["val_accuracy"] for row in r.trials]
    assert r.best_val == max(vals) and r.final["test_accuracy"] > 80
    assert r.final["val_accuracy"] is None  # the final run trains as the recipe would: here no validation
    doc = tomllib.loads(r.recipe_path.read_text())
    assert "the test set was not read" in doc["description"]
    assert doc["train"]["lr"] == pytest.approx(r.best_params["lr"]) and doc["train"]["val_size"] == 0.0
    again = make_config(None, r.recipe_path)  # the recipe file reads back as the tuned settings
    assert again.label_smoothing == pytest.approx(r.best_params["label_smoothing"]) and again.epochs == 2


@pytest.mark.slow  # ~24 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_parallel_trials_share_one_study(tmp_path):
    r = tune(space="lr", trials=2, jobs=2, runs_dir=tmp_path, name="p", final=False, log=lambda m: None, epochs=1,
             **DIGITS)
    assert len(r.trials) == 2 and {t["state"] for t in r.trials} == {"complete"} and r.final is None
    assert len(list((tmp_path / "p" / "trials").iterdir())) == 2


@pytest.mark.parametrize("args,words", [(["--space", "lr=log:-1:1"], "LOW > 0"), (["--trials", "0"], "--trials must be ≥ 1"),
                                        (["--space", "learning_rate"], "did you mean lr")])
def test_tune_cli_errors_are_one_line(tmp_path, capsys, args, words):
    from smallvision.cli.main import main

    with pytest.raises(SystemExit) as e:  # the real command line, in-process
        main(["tune", "--dataset", "digits", "--runs-dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.strip().count("\n") == 0 and words in err, err
    assert not list(tmp_path.iterdir())  # nothing started


def test_pruning_compares_trials_at_the_same_point_of_their_schedule():
    """A weak trial is pruned against finished trials of its own length at the same epoch, but a
    trial of another length (its learning rate at epoch k differs) is not pruned against them."""
    import types

    import optuna

    from smallvision.tune import _pruner, _Pruning

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=_pruner(True))
    for _ in range(3):  # three finished 9-epoch trials at 90 % from epoch 1
        t = study.ask()
        for e in range(1, 10):
            _Pruning(t).on_epoch_end(types.SimpleNamespace(cfg=types.SimpleNamespace(epochs=9)), {"epoch": e,
                                     "val_accuracy": 90.0}, "")
        study.tell(t, 90.0)

    def first_epoch(epochs: int) -> bool:
        t = study.ask()
        try:
            _Pruning(t).on_epoch_end(types.SimpleNamespace(cfg=types.SimpleNamespace(epochs=epochs)),
                                     {"epoch": 1, "val_accuracy": 50.0}, "")
        except optuna.TrialPruned:
            return True
        finally:
            study.tell(t, state=optuna.trial.TrialState.FAIL)
        return False

    assert first_epoch(9) is True  # same length, same point, far below: pruned
    assert first_epoch(7) is False  # 1/7 of its schedule: nothing to compare with


def test_the_trials_split_has_its_own_flag_and_val_size_is_not_dropped(tmp_path):
    """--trial-val-size sets the trials' split; --set val_size changes the recipe (and so the trials
    too, when no trial split is given) instead of being silently replaced by the recipe's value."""
    from conftest import run_main

    flags = ["--dataset", "digits", "--set", "model=cnn-fast", "--set", "epochs=1", "--trials", "1", "--no-final",
             "--runs-dir", str(tmp_path), "--space", "lr"]
    for extra, name, expect in ([["--set", "val_size=0.3"], "a", 0.3],
                                [["--set", "val_size=0.3", "--trial-val-size", "0.2"], "b", 0.2]):
        r = run_main("tune", *flags, *extra, "--set", f"name={name}")
        assert r.returncode == 0, r.stderr
        (trial,) = (tmp_path / name / "trials").iterdir()
        assert json.loads((trial / "config.json").read_text())["val_size"] == expect
