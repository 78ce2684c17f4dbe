"""Engine: the training loop, evaluation, optimisers and schedules, checkpoints."""

from smallvision.engine.checkpoint import load_checkpoint, load_model, save_checkpoint
from smallvision.engine.evaluate import EvalResult, evaluate
from smallvision.engine.trainer import TrainResult, fit
from smallvision.registry import import_all

MODULES = import_all(__name__, __path__)  # optimiser and schedule plugins: one file each, no import list

__all__ = ["EvalResult", "TrainResult", "evaluate", "fit", "load_checkpoint", "load_model", "save_checkpoint"]
