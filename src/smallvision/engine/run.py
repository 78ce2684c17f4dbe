"""A run's life on disk: `RunFolder` owns every file name and the lock; `LoopState` is what resume saves.

Phases, in order: ``training`` (the loop; resume continues mid-epoch) -> ``trained`` (the loop
is over, the selected weights are saved) -> ``tested`` (the test set was read once, summary.json
written) -> ``reported`` (report written: the run is finished). ``--resume`` continues from
whichever phase a killed run reached, so a run killed during its final test or report completes
with the same figures instead of saying "already finished".
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import signal
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from smallvision.errors import UsageError
from smallvision.io import write_json

PHASES = ("training", "trained", "tested", "reported")


@dataclass
class LoopState:
    """The loop's counters and history: plain data, saved as JSON inside resume.safetensors."""

    epoch: int = 1  # the epoch to run next (1-based)
    step_in_epoch: int = 0  # steps of `epoch` already taken (a mid-epoch save)
    step: int = 0  # optimiser steps so far
    best_acc: float = -1.0  # the selected model's validation accuracy (-1: none yet)
    best_loss: float = float("inf")
    best_epoch: int = 0
    bad_epochs: int = 0  # evaluations since the last improvement (early stopping)
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per evaluated epoch
    elapsed: float = 0.0  # seconds of training so far (across resumes)
    step_time: float = 0.0  # of which inside training steps (images/s)
    images_seen: int = 0
    acc: list[float] = field(default_factory=lambda: [0.0, 0, 0])  # this epoch so far: loss sum, correct, seen
    plateau: dict[str, float] = field(default_factory=dict)
    perm_seed: int | None = None  # data_order = "torch": this epoch's DataLoader seed
    phase: str = "training"
    stopped: str = ""  # why the loop ended

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopState:
        known = {f.name for f in dataclasses.fields(cls)}
        state = cls(**{k: v for k, v in d.items() if k in known})
        if d.get("finished") and "phase" not in d:  # resume files written before phases existed
            state.phase, state.stopped = "reported", d["finished"]
        return state


class Counted:
    """`sync` for a session with ``state`` (LoopState), ``meter`` (two unsynced device sums of this
    epoch: a loss sum, then correct predictions or a second loss), ``t_start`` and ``step_clock``."""

    state: LoopState
    meter: list[Any]
    t_start: float
    step_clock: float | None

    def sync(self) -> None:
        """Bring the saved counters up to date (one device sync): the epoch's sums and the times."""
        import time

        now = time.perf_counter()
        if self.meter:
            first, second = self.meter
            self.state.acc = [self.state.acc[0] + float(first), self.state.acc[1] + second.item(), self.state.acc[2]]
            first.zero_(), second.zero_()
        if self.state.phase == "training":
            self.state.elapsed = now - self.t_start
        if self.step_clock is not None:
            self.state.step_time += now - self.step_clock
            self.step_clock = now

    def stepped(self, images: int, callbacks: list[Any]) -> None:
        """Count one optimiser step on `images` images, then the callbacks' ``on_step``."""
        from smallvision.engine.callbacks import call

        self.state.acc[2] += images
        self.state.step += 1
        self.state.step_in_epoch += 1
        call(callbacks, "on_step", self)
        crash_point(f"step-{self.state.step}")

    def epoch_done(self) -> None:
        """Stop the epoch's step clock, its counters brought up to date."""
        self.sync()
        self.step_clock = None


def crash_point(phase: str) -> None:
    """Fault injection for the reliability tests: ``SMALLVISION_KILL_AT=<point>`` SIGKILLs this
    process the moment the run reaches that point, its state saved: a phase (``trained``,
    ``tested``), the end of an epoch (``epoch-3``) or of a step (``step-14``, after its periodic save). Under torchrun only rank 0 is killed (torchrun
    then stops the others, as when a machine fails)."""
    if os.environ.get("SMALLVISION_KILL_AT") == phase and os.environ.get("RANK", "0") == "0":
        os.kill(os.getpid(), signal.SIGKILL)


class RunFolder:
    """``runs/<name>/``: every file name a run writes, and a lock so two processes never share one."""

    CONFIG, METRICS_CSV, METRICS_JSON, SUMMARY = "config.json", "metrics.csv", "metrics.json", "summary.json"
    BEST, LAST, RESUME, RESUME_PREV = "best.safetensors", "last.safetensors", "resume.safetensors", "resume.prev.safetensors"
    REPORT, REPORT_MD, REPORT_JSON = "report.html", "report.md", "report.json"
    TENSORBOARD, LOCK, STUDY = "tensorboard", ".lock", "study.journal"
    CALIBRATION, RELIABILITY = "calibration.json", "reliability.png"
    THRESHOLDS = "thresholds.json"  # a multi-label run's decision thresholds and its test figures at them
    EXPLAIN = "explain"  # heatmaps of the report's top-loss images (a folder)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, runs_dir: str | Path, base: str) -> RunFolder:
        """A new folder ``runs_dir/base`` (``base-2``, ``-3`` ... when taken), locked."""
        runs = Path(runs_dir)
        runs.mkdir(parents=True, exist_ok=True)
        for i in range(1, 10_000):
            path = runs / (base if i == 1 else f"{base}-{i}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return cls(path).lock()
        raise UsageError(f"{runs}: too many runs named {base}")

    def lock(self) -> RunFolder:
        """An exclusive lock for this process's lifetime (the OS drops it even on SIGKILL)."""
        fd = os.open(self.path / self.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = (self.path / self.LOCK).read_text().strip() or "?"
            raise UsageError(f"{self.path} is in use by another smallvision process (pid {holder}); "
                             "wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        return self

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def write_config(self, cfg: dict[str, Any], resolved: dict[str, Any], command: str) -> None:
        """config.json: the settings (``--config`` reads them back) plus what was resolved and the command."""
        write_json(self / self.CONFIG, {**cfg, "resolved": resolved, "command": command})


def default_run_name(cfg: Any) -> str:
    stem = cfg.recipe or f"{cfg.dataset.split(':')[0]}-{cfg.model}"
    return cfg.name or f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"
