"""Errors that are the user's to fix: the CLI prints them as one line and exits with status 2."""


class UsageError(Exception):
    """Bad input (a name, a file, a hyperparameter). The message must name the problem."""


class DataError(UsageError):
    """A data file or folder that cannot be used as given."""


class CheckpointError(UsageError):
    """A checkpoint that is missing, corrupt, unsafe or for another model."""


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss."""


class Preempted(Exception):
    """SIGTERM (or SIGINT) arrived during training; a resume state was saved first."""
