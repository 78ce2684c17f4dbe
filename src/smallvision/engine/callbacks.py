"""What the loop calls besides training: progress, periodic saves, signals, TensorBoard.

Each is a plain object with any of ``on_epoch_start(s, epoch)``, ``on_step(s)``,
``on_epoch_end(s, row, line)`` and ``close()``; the loop calls them in order (`call`). ``s`` is
the trainer's `Session`. No framework: a new extension is a class with the hooks it needs.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from smallvision.errors import Preempted, UsageError


def call(callbacks: list[Any], hook: str, *args: Any) -> None:
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(*args)


class ProgressBar:
    """A rich bar on a terminal (refreshed on a timer), one line per epoch in logs."""

    def on_epoch_start(self, s: Any, epoch: int) -> None:
        phase = s.phase_label(epoch) if hasattr(s, "phase_label") else ""  # GAN/autoencoder sessions: one phase
        s.progress.start_epoch(f"{phase}epoch {epoch}/{s.cfg.epochs}", len(s.loader))

    def on_step(self, s: Any) -> None:
        s.progress.advance()

    def on_epoch_end(self, s: Any, row: dict[str, Any] | None, line: str) -> None:
        s.progress.end_epoch(line)


def checkpoint_rule(spec: str) -> tuple[int, float]:
    """'' -> (0, 0); '500' -> every 500 steps; '90s' -> every 90 seconds."""
    if not spec:
        return 0, 0.0
    try:
        return (0, float(spec[:-1])) if spec.endswith("s") else (int(spec), 0.0)
    except ValueError:
        raise UsageError(f"--checkpoint-every takes STEPS or SECONDS followed by s (e.g. 500 or 60s), got {spec!r}") from None


class PeriodicSave:
    """``--checkpoint-every 500`` (steps) or ``60s``: the resume state mid-epoch, besides every epoch's."""

    def __init__(self, spec: str) -> None:
        self.every_steps, self.every_secs = checkpoint_rule(spec)
        self.last = time.perf_counter()

    def on_step(self, s: Any) -> None:
        now = time.perf_counter()
        if (self.every_steps and s.state.step % self.every_steps == 0) or (
                self.every_secs and now - self.last >= self.every_secs):
            s.save_state()
            self.last = time.perf_counter()

    def on_epoch_end(self, s: Any, row: dict[str, Any] | None, line: str) -> None:
        self.last = time.perf_counter()  # the epoch's own save just happened


class StopOnSignal:
    """SIGTERM/SIGINT (a scheduler pre-empting the job, Ctrl-C) become a flag checked after each
    step: the state is saved, the resume command printed, and the run exits 143. Main thread only."""

    def __init__(self) -> None:
        self.signum = 0
        self._old: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def on_step(self, s: Any) -> None:
        if self.signum:
            s.save_state()
            s.progress.close()
            kind = getattr(s.cfg, "kind", "")  # a generative run resumes with its own command
            raise Preempted(f"stopped by signal {self.signum} at epoch {s.state.epoch}, step {s.state.step_in_epoch}/"
                            f"{len(s.loader)}; state saved. Continue with: smallvision {kind + ' ' if kind else ''}"
                            f"train --resume {s.run}")

    def close(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


class TensorBoardLog:
    """``--tensorboard``: each evaluated epoch's row as scalars in runs/<name>/tensorboard."""

    def __init__(self, logdir: str) -> None:
        from torch.utils.tensorboard import SummaryWriter  # the 'tensorboard' extra (TrainConfig.validate checks)

        self.tb = SummaryWriter(logdir)

    def on_epoch_end(self, s: Any, row: dict[str, Any] | None, line: str) -> None:
        if row is None:
            return
        for key, value in row.items():
            if key not in ("epoch", "step") and value is not None:
                self.tb.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()
