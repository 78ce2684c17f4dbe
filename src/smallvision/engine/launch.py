"""The torchrun launcher: ``smallvision train --nproc N ...`` starts N processes of the same command.

One function, `launch(args, nproc)`, takes the command's arguments (as `cli.main.main(argv)`
received them, or as `api.train_command` writes them for a notebook), drops ``--nproc`` and runs
``torchrun --standalone --nproc-per-node N -m smallvision ARGS`` on this machine; each process then
joins the job as `engine/distributed.py` says. Nothing here reads or edits ``sys.argv``, and
nothing imports torch: the launcher only starts processes.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

NPROC = "--nproc"


def worker_args(args: list[str]) -> list[str]:
    """`args` without ``--nproc N`` / ``--nproc=N``: what each of torchrun's processes runs."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == NPROC:
            skip = True
        elif not a.startswith(NPROC + "="):
            out.append(a)
    return out


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """The command line that runs `args` as `nproc` processes (torchrun from this interpreter)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "smallvision", *worker_args(args)]


def launch(args: list[str], nproc: int) -> int:
    """Run `args` (a smallvision command line, ``--nproc`` allowed in it) as `nproc` processes on
    this machine; the job's exit status."""
    cmd = torchrun_command(nproc, args)
    print("running: torchrun " + shlex.join(cmd[3:]), file=sys.stderr, flush=True)
    return subprocess.run(cmd).returncode
