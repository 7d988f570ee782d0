"""The panel's local backend: one ``backend serve`` child process of this Blender, started
from the Python environment the user points at, on a free loopback port."""

from __future__ import annotations

import atexit
from pathlib import Path

from .shared import errors

try:
    from .vendor.backend.server.errors import ServeError
    from .vendor.backend.server.process import ServerProcess
except ImportError:  # run from the repository: the installed backend provides them
    from backend.server.errors import ServeError
    from backend.server.process import ServerProcess

_RUNNING: dict[str, ServerProcess] = {}


class LocalBackendError(errors.SetupError, RuntimeError):
    """The local backend could not start: says why and what to set."""


def start(python: str, timeout: float = 600.0) -> str:
    """Start (or keep) the local backend; returns its address."""
    current = _RUNNING.get("server")
    if current is not None and current.running:
        return current.endpoint
    if not python or not Path(python).is_file():
        raise LocalBackendError("set Python to the interpreter of an environment where the "
                                "PEAR backend is installed (e.g. <project>/.venv/bin/python)")
    try:
        server = ServerProcess.start(python=python, timeout=timeout)
    except ServeError as exc:
        raise LocalBackendError(str(exc)) from None
    _RUNNING["server"] = server
    return server.endpoint


def address() -> str | None:
    server = _RUNNING.get("server")
    return server.endpoint if server is not None and server.running else None


def state() -> str:
    server = _RUNNING.get("server")
    if server is None:
        return "stopped"
    return f"running at {server.endpoint}" if server.running else (
        f"exited ({server.process.returncode})")


def stop() -> None:
    server = _RUNNING.pop("server", None)
    if server is not None:
        server.stop(timeout=30.0)


atexit.register(stop)  # never leave a backend behind when Blender quits
