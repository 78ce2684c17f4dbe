"""What the benchmark scripts share: the CPU's name for table headers, and printing a table that
`--out` also writes (the committed copies in benchmarks/results/)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def emit(lines: list[str], out: str | None) -> None:
    """Print the table; with `out`, also write it there."""
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if out:
        Path(out).write_text(text)


def recipe_entries(spec: str) -> list[tuple[str, list[str]]]:
    """``photo-transfer,seed-cats-dogs-resnet18[--model-arg pretrained=false --max-time 300]``:
    recipes, each with its own extra flags in brackets (space-separated)."""
    import re

    return [(m[1], m[2].split() if m[2] else []) for m in re.finditer(r"([\w.-]+)(?:\[([^\]]*)\])?", spec)]
