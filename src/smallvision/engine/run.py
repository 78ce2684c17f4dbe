"""A run's life: `LoopState` is what resume saves; `epoch_loop`, `running` and `open_run` are the
lifecycle every loop shares (the folder itself, `RunFolder`, is smallvision/runfolder.py).

Phases, in order: ``training`` (the loop; resume continues mid-epoch) -> ``trained`` (the loop
is over, the selected weights are saved) -> ``tested`` (the test set was read once, summary.json
written) -> ``reported`` (report written: the run is finished). ``--resume`` continues from
whichever phase a killed run reached, so a run killed during its final test or report completes
with the same figures instead of saying "already finished".
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from smallvision.errors import UsageError
from smallvision.runfolder import RunFolder

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
    sums: dict[str, float] = field(default_factory=dict)  # this epoch so far, by name: loss, correct, d_loss, ...
    seen: int = 0  # images this epoch so far
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


class RunSession:
    """What every loop's session shares (the classifier's `engine.setup.Session`, the generative
    `GenSession`): ``state`` (LoopState), ``meter`` (this epoch's unsynced device sums, by name),
    ``t_start``, ``step_clock``, ``run``, ``progress``, ``cfg``; each kind gives `save_state`
    and `begin_epoch` (training mode, the epoch's batches)."""

    state: LoopState
    meter: dict[str, Any]
    t_start: float
    step_clock: float | None

    def save_state(self) -> None:
        raise NotImplementedError

    def begin_epoch(self, epoch: int) -> Any:
        """Set up `epoch` (training mode, meters); return its batches from ``state.step_in_epoch``."""
        raise NotImplementedError

    def add(self, name: str, value: Any) -> None:
        """Add a 0-d device tensor to this epoch's sum `name` (no sync: float64, or int64 for counts)."""
        m = self.meter.get(name)
        if m is None:
            import torch

            m = self.meter[name] = torch.zeros((), device=value.device,
                                               dtype=torch.float64 if value.is_floating_point() else torch.int64)
        m += value

    def sync(self) -> None:
        """Bring the saved counters up to date (one device sync): the epoch's sums and the times."""
        import time

        now = time.perf_counter()
        for name, m in self.meter.items():
            self.state.sums[name] = self.state.sums.get(name, 0) + m.item()
            m.zero_()
        if self.state.phase == "training":
            self.state.elapsed = now - self.t_start
        if self.step_clock is not None:
            self.state.step_time += now - self.step_clock
            self.step_clock = now

    def take_sums(self) -> tuple[dict[str, float], int]:
        """The epoch's sums and image count, reset for the next epoch."""
        out = (dict(self.state.sums), self.state.seen)
        self.state.sums, self.state.seen = {}, 0
        return out

    def stepped(self, images: int, callbacks: list[Any]) -> None:
        """Count one optimiser step on `images` images, then the callbacks' ``on_step``."""
        from smallvision.engine.callbacks import call

        self.state.seen += images
        self.state.step += 1
        self.state.step_in_epoch += 1
        call(callbacks, "on_step", self)
        crash_point(f"step-{self.state.step}")

    def epoch_done(self) -> None:
        """Stop the epoch's step clock, its counters brought up to date."""
        self.sync()
        self.step_clock = None

    def enter_phase(self, phase: str) -> None:
        """Save that the run reached `phase` (so a resume starts there), then the tests' crash point."""
        self.state.phase = phase
        self.save_state()
        crash_point(phase)


def epoch_loop(s: RunSession, step: Callable[[Any, Any, Any], None],
               epoch_end: Callable[[Any, int], tuple[dict[str, Any] | None, str]], callbacks: list[Any]) -> None:
    """The one epoch skeleton of every loop: from wherever the state says, each epoch's batches
    (`s.begin_epoch`) through `step(s, xb, yb)`, then `epoch_end(s, epoch)` -> (metrics row or
    None, log line); stops when a rule set ``state.stopped`` or at ``cfg.max_time``."""
    import time

    from smallvision.engine.callbacks import call

    cfg, st = s.cfg, s.state  # type: ignore[attr-defined]
    for epoch in range(st.epoch, cfg.epochs + 1):
        if st.stopped:  # a stop rule fired before a kill: resume goes on to what follows training
            break
        batches = s.begin_epoch(epoch)
        s.step_clock = time.perf_counter()
        call(callbacks, "on_epoch_start", s, epoch)
        for xb, yb in batches:
            step(s, xb, yb)
            s.stepped(len(xb), callbacks)
        s.epoch_done()
        row, line = epoch_end(s, epoch)
        call(callbacks, "on_epoch_end", s, row, line)
        if not st.stopped and cfg.max_time and st.elapsed >= cfg.max_time:
            st.stopped = f"time limit {cfg.max_time:g}s reached after epoch {epoch}"
    st.stopped = st.stopped or "completed all epochs"


@contextlib.contextmanager
def running(s: Any, callbacks: list[Any], *cleanup: Callable[[], None]) -> Iterator[None]:
    """The guard around a run's loop and finish: whatever happens, the callbacks closed, the
    progress display closed, the folder unlocked, then `cleanup`."""
    from smallvision.engine.callbacks import call

    try:
        yield
    finally:
        call(callbacks, "close")
        s.progress.close()
        s.run.unlock()
        for fn in cleanup:
            fn()


def open_run(runs_dir: str | Path, name: str, resume: str | Path | None, restore: Callable[[], dict[str, Any]],
             write_config: Callable[[RunFolder], None], lock: bool = True) -> tuple[RunFolder, LoopState]:
    """Every loop's start: a new locked folder ``runs_dir/name`` (``-2`` when taken) and its
    config.json (`write_config`), or the run at `resume`, locked, with the LoopState `restore()`
    returns (it loads the weights and optimisers); a finished run is refused. `lock=False`: a
    second process of a torchrun job (rank 0 holds the lock)."""
    if resume is None:
        run = RunFolder.create(runs_dir, name)
        write_config(run)
        return run, LoopState()
    run = RunFolder(resume).lock() if lock else RunFolder(resume)
    try:
        state = LoopState.from_dict(restore())
    except BaseException:
        run.unlock()
        raise
    if state.phase == "reported":
        run.unlock()
        raise UsageError(f"{resume}: this run already finished ({state.stopped}); nothing to resume")
    return run, state


def crash_point(phase: str) -> None:
    """Fault injection for the reliability tests: ``SMALLVISION_KILL_AT=<point>`` SIGKILLs this
    process the moment the run reaches that point, its state saved: a phase (``trained``,
    ``tested``), the end of an epoch (``epoch-3``) or of a step (``step-14``, after its periodic save). Under torchrun only rank 0 is killed (torchrun
    then stops the others, as when a machine fails)."""
    if os.environ.get("SMALLVISION_KILL_AT") == phase and os.environ.get("RANK", "0") == "0":
        os.kill(os.getpid(), signal.SIGKILL)


def default_run_name(cfg: Any) -> str:
    """--name, else the recipe (classifier) or dataset-model, plus a time stamp."""
    stem = getattr(cfg, "recipe", "") or f"{cfg.spec.name}-{cfg.model}"
    return cfg.name or f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"

