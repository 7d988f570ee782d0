"""Errors that stop ``backend serve`` or ``backend keys`` before any request: each says why
and what to do. (No zmq import here, so the CLI can catch them cheaply.)"""

from ..errors import SetupError


class ServeError(SetupError, RuntimeError):
    """The server cannot start as configured."""


class KeyFileError(SetupError, ValueError):
    """CURVE key files missing or unreadable."""
