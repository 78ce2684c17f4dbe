"""Count the options of every `smallvision` command: the size of the CLI a newcomer has to read.

    .venv/bin/python scripts/count_options.py          # a table, then the total
    .venv/bin/python scripts/count_options.py --total  # the total alone

Walks the click command tree that typer builds from `smallvision.cli.main.app` and counts, per
command, its parameters that are options (not arguments), leaving out ``--help``. Group
callbacks' options (the root's ``--debug``) count once, on the group.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import typer

from smallvision.cli.main import app


def commands(cmd: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every command and group under `cmd`, depth first, with its full name (typer vendors click,
    so groups and options are recognised by what they have, not by click's classes)."""
    yield path, cmd
    if hasattr(cmd, "commands"):
        for name in sorted(cmd.commands):
            yield from commands(cmd.commands[name], f"{path} {name}")


def options(cmd: Any) -> int:
    """The command's own options, ``--help`` left out (click adds it to every command)."""
    return sum(1 for p in cmd.params if p.param_type_name == "option" and p.name != "help")


def main() -> None:
    rows = [(path, options(cmd)) for path, cmd in commands(typer.main.get_command(app), "smallvision")]
    total = sum(n for _, n in rows)
    if "--total" in sys.argv[1:]:
        print(total)
        return
    width = max(len(path) for path, _ in rows)
    for path, n in rows:
        print(f"{path:<{width}}  {n:>4}")
    print(f"{'total':<{width}}  {total:>4}  ({sum(1 for _, n in rows if n)} commands with options)")


if __name__ == "__main__":
    main()
