"""Print the table (docs/runs.md) of bad inputs and the one-line message each gets.

    .venv/bin/python scripts/bad_input_table.py

Runs every case of tests/bad_inputs.py through the real CLI entry point (in-process) and
shows the message and exit status actually produced; tests/test_bad_inputs.py checks them.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ["SMALLVISION_OFFLINE"] = "1"

from bad_inputs import CASES, FAKE, fixtures  # noqa: E402
from smallvision import api  # noqa: E402
from smallvision.cli.main import main  # noqa: E402


def main_table() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        fixtures(d)
        with contextlib.redirect_stderr(io.StringIO()):
            api.train(dataset=FAKE, epochs=1, runs_dir=d / "runs", name="ok", report=False)
        print("| # | bad input | message (stderr, one line) | exit |\n|---:|---|---|---:|")
        for i, case in enumerate(CASES, 1):
            args = case.args(d)
            if args[0] == "train" and "--resume" not in args:
                args += ["--runs-dir", str(d / "scratch-runs")]
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    main(args)
                    code = 0
                except SystemExit as e:
                    code = e.code
            msg = err.getvalue().strip().replace(str(d) + "/", "").replace("|", "\\|")
            print(f"| {i} | {case.what} | `{msg}` | {code} |")


if __name__ == "__main__":
    main_table()
