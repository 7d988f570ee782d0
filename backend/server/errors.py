"""Errors that stop ``backend serve`` or ``backend keys`` before any request: each says why
and what to do. (No zmq import here, so the CLI can catch them cheaply.)"""


class ServeError(RuntimeError):
    """The server cannot start as configured."""


class KeyFileError(ValueError):
    """CURVE key files missing or unreadable."""
