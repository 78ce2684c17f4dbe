"""Optimisers and learning-rate schedules, outside the training loop's package so that
``engine`` imports only what a run needs and the reading side (predict, export, serve) never
imports the loop. A new optimiser or schedule is one file here with one ``@OPTIMIZERS.register``
or ``@SCHEDULERS.register`` (imported with the package, no other edit)."""

from smallvision.optim.schedules import (
    OPTIMIZERS,
    SCHEDULERS,
    PlateauState,
    build_optimizer,
    lr_at,
    two_phases,
)
from smallvision.registry import import_all

MODULES = import_all(__name__, __path__)  # optimiser and schedule plugins: one file each, no import list

__all__ = ["OPTIMIZERS", "SCHEDULERS", "PlateauState", "build_optimizer", "lr_at", "two_phases"]
