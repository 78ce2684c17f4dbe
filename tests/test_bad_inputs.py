"""Each bad input: one line on stderr naming the problem, exit status 2, no traceback, and
nothing already saved is lost (the reference run stays loadable)."""

from pathlib import Path

import pytest

from bad_inputs import CASES, FAKE, fixtures
from smallvision import api
from smallvision.cli.main import main
from smallvision.modelfile import load_model


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    fixtures(d)
    api.train(dataset=FAKE, epochs=1, runs_dir=d / "runs", name="ok", report=False)
    return d


def run_main(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code, capsys.readouterr().err


def test_there_are_at_least_25_kinds():
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c.what for c in CASES])
def test_bad_input(case, scratch, capsys, tmp_path):
    args = case.args(scratch)
    if args[0] == "train" and "--resume" not in args:
        args += ["--runs-dir", str(tmp_path / "runs")]
    code, err = run_main(args, capsys)
    assert code == 2, err
    assert "Traceback" not in err and "PAYLOAD RAN" not in err
    assert case.expect in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    load_model(scratch / "runs" / "ok")  # the finished run survived every bad command
