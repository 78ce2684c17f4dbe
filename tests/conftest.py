"""Shared fixtures. Tests never touch the network (SMALLVISION_OFFLINE=1) and find real data
through SMALLVISION_DATA (the Makefile points it at ../shared/data when that exists)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ["SMALLVISION_OFFLINE"] = "1"
if not os.environ.get("SMALLVISION_DATA") and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["SMALLVISION_DATA"] = str(ROOT.parent / "shared" / "data")
if os.environ.get("PYTEST_XDIST_WORKER"):  # make test: one worker per core, so one thread each
    # (the processes tests start inherit it); two workers of two threads on two cores thrash
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


def _available(name: str) -> bool:
    from smallvision.data.idx import IDX_FILES
    from smallvision.data.sources import find_files

    found, _ = find_files(name, IDX_FILES, None)
    return found is not None


needs_mnist = pytest.mark.skipif(not _available("mnist"), reason="MNIST files not found (set SMALLVISION_DATA)")
needs_fashion = pytest.mark.skipif(not _available("fashion-mnist"), reason="Fashion-MNIST files not found")


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real `smallvision` command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "smallvision", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def run_main(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command line (the same parsing and error table) run in this process: no interpreter
    and torch start-up per call. tests/test_cli.py keeps a few cases in real subprocesses."""
    import contextlib
    import io

    from smallvision.cli.main import main

    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def _session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder all of this session's pytest-xdist workers share (the session's own temp root)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if base.name.startswith("popen-gw") else base  # a worker's own: <session>/popen-gwN


@pytest.fixture(scope="session")
def mnist_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real mnist-fast run (1 epoch, ~99 %), shared by the export, serve, explain and import
    tests: trained once per session, not once per worker (the first worker trains under a file
    lock, the others wait and read it)."""
    if not _available("mnist"):
        pytest.skip("MNIST files not found (set SMALLVISION_DATA)")
    from filelock import FileLock  # torch's own dependency

    root = _session_dir(tmp_path_factory)
    run = root / "shared-runs" / "served"
    with FileLock(str(root / "shared-mnist-run.lock")):
        if not (run / "summary.json").is_file():
            from smallvision import api

            # no report: no test reads this run's (report tests train their own); it was a third of the cost
            assert api.train("mnist-fast", runs_dir=run.parent, epochs=1, name="served", report=False).run_dir == run
    return run


@pytest.fixture(scope="session")
def mnist_onnx(mnist_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from filelock import FileLock

    with FileLock(str(_session_dir(tmp_path_factory) / "shared-mnist-onnx.lock")):
        path = mnist_run / "model.onnx"
        if not path.is_file():
            from smallvision.export import export

            assert Path(export(mnist_run, "onnx").path) == path
    return path
