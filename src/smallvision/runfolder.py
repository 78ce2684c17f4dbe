"""`RunFolder`: a run's folder on disk, every file name a run writes in it, and its lock.

Below the engine (it needs only `errors` and `io`), so what reads a run's files (the model file,
the report, predict, compare) names them without importing the training loop.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from smallvision.errors import UsageError
from smallvision.io import write_json


class RunFolder:
    """``runs/<name>/``: every file name a run writes, and a lock so two processes never share one."""

    CONFIG, METRICS_CSV, METRICS_JSON, SUMMARY = "config.json", "metrics.csv", "metrics.json", "summary.json"
    BEST, LAST, RESUME, RESUME_PREV = "best.safetensors", "last.safetensors", "resume.safetensors", "resume.prev.safetensors"
    REPORT, REPORT_MD, REPORT_JSON = "report.html", "report.md", "report.json"
    TENSORBOARD, LOCK, STUDY = "tensorboard", ".lock", "study.journal"
    CALIBRATION, RELIABILITY = "calibration.json", "reliability.png"
    OOD = "ood.json"
    THRESHOLDS = "thresholds.json"  # a multi-label run's decision thresholds and its test figures at them
    EXPLAIN = "explain"  # heatmaps of the report's top-loss images (a folder)
    CURVES, CONFUSION, TOP_LOSSES = "curves.png", "confusion.png", "top_losses.png"  # the report's figures
    LR_FIND_PNG, LR_FIND_JSON = "lr_find.png", "lr_find.json"  # smallvision lr-find
    TRIALS, CV = "trials.json", "cv.json"  # a tune study's trials; a cross-validation's folds
    SUSPECTS_CSV, SUSPECTS_PNG, SUSPECTS_JSON = "suspects.csv", "suspects.png", "suspects.json"  # smallvision labels
    LABEL_RANKING = "label_ranking.csv"  # every image by label quality, the flagged ones marked
    EXPLAIN_JSON = "explain.json"  # smallvision explain
    # generative runs: the networks (what `gan|diffusion|autoencoder sample` load) and the figures
    GENERATOR, AUTOENCODER = "generator.safetensors", "autoencoder.safetensors"
    LOSSES, SAMPLES_GIF, QUALITY = "losses.png", "samples.gif", "quality.png"
    LATENT, RECONSTRUCTIONS = "latent.png", "reconstructions.png"

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
