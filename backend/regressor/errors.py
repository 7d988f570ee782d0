"""Why the regressor cannot run; torch-free, so the command line can name these cheaply."""

from ..errors import SetupError


class RegressorUnavailable(SetupError, RuntimeError):
    """No usable checkpoint: the regressor cannot run (never a silently random network)."""


class CheckpointMismatch(SetupError, ValueError):
    """A checkpoint made for another asset or network configuration."""
