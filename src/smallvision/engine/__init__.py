"""Engine: the training loop, evaluation, optimisers and schedules, checkpoints."""

from smallvision.engine.checkpoint import load_checkpoint, load_model, save_checkpoint
from smallvision.engine.evaluate import EvalResult, evaluate
from smallvision.engine.trainer import TrainResult, fit

__all__ = ["EvalResult", "TrainResult", "evaluate", "fit", "load_checkpoint", "load_model", "save_checkpoint"]
