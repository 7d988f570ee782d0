"""Why the regressor cannot run; torch-free, so the command line can name these cheaply."""


class RegressorUnavailable(RuntimeError):
    """No usable checkpoint: the regressor cannot run (never a silently random network)."""


class CheckpointMismatch(ValueError):
    """A checkpoint made for another asset or network configuration."""
