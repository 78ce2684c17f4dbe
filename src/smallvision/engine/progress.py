"""Progress display: a rich bar on a terminal (refreshed on a timer, not per step), plain
one-line-per-epoch logs otherwise, so log files never fill with bar redraws."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    def __init__(self, enabled: bool = True, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.live = enabled and self.stream.isatty()
        self.bar: Any = None
        self.task: Any = None
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TimeRemainingColumn(), console=Console(file=self.stream),
                                    refresh_per_second=4, transient=True)
            self.bar.start()

    def start_epoch(self, label: str, steps: int) -> None:
        if self.live:
            self.task = self.bar.add_task(label, total=steps)

    def advance(self, n: int = 1) -> None:
        if self.live and self.task is not None:
            self.bar.advance(self.task, n)

    def end_epoch(self, line: str) -> None:
        """Close the epoch's bar and print its line ('' prints nothing: an epoch not evaluated)."""
        if self.live:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = None
            if line:
                self.bar.console.print(line, highlight=False)
        elif line:
            print(line, file=self.stream, flush=True)

    def log(self, line: str) -> None:
        if self.live:
            self.bar.console.print(line, highlight=False)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.live:
            self.bar.stop()
