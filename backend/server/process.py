"""Start ``backend serve`` as a child process and learn where it listens (the Blender add-on's
local backend, benches, tests). Standard library only: the add-on carries a copy.

The server logs JSON lines to stderr; its ``serving`` event carries the bound endpoint, so a
wildcard port (``tcp://127.0.0.1:*``) can be used and read back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .errors import ServeError


class ServerProcess:
    """A running ``backend serve``; ``logs`` fills with its JSON log events."""

    def __init__(self, process: subprocess.Popen, endpoint: str, logs: list[dict],
                 reader: threading.Thread):
        self.process, self.endpoint, self.logs, self._reader = process, endpoint, logs, reader

    @classmethod
    def start(cls, args: Sequence[str] = (), python: str | Path = sys.executable,
              home: Path | None = None, bind: str = "tcp://127.0.0.1:*",
              timeout: float = 300.0) -> ServerProcess:
        """``python -m backend.cli serve --bind BIND ARGS`` with data dir ``home`` (None: the
        inherited PEAR_HOME); returns once it listens, or raises ServeError saying why not."""
        env = dict(os.environ)
        if home is not None:
            env["PEAR_HOME"] = str(home)
        try:
            process = subprocess.Popen([str(python), "-m", "backend.cli", "serve", "--bind",
                                        bind, *args], env=env, stderr=subprocess.PIPE,
                                       stdout=subprocess.DEVNULL, encoding="utf-8",
                                       errors="replace")  # a stray byte must not end the reader
        except OSError as exc:
            raise ServeError(f"cannot run {python}: {exc}; point it at the Python of an "
                             "environment where the PEAR backend is installed") from None
        logs: list[dict] = []
        reader = threading.Thread(target=_read_logs, args=(process.stderr, logs), daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        while True:
            serving = [e for e in logs if e.get("event") == "serving"]
            if serving:
                return cls(process, serving[0]["endpoint"], logs, reader)
            if process.poll() is not None or time.monotonic() > deadline:
                if process.poll() is None:
                    process.kill()
                reader.join(timeout=2)
                said = [e.get("line") or e.get("message") or e for e in logs[-8:]]
                raise ServeError(f"backend serve did not start (exit code {process.poll()}): "
                                 f"{said}")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (queued work is answered), then kill after ``timeout``."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)

    def rss_mb(self) -> float:
        """Resident memory of the server process (Linux)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise ServeError("the server's memory use is not readable from /proc")

    def events(self, name: str) -> list[dict]:
        """The log events called ``name`` so far; all of them once the process has exited."""
        if self.process.poll() is not None:
            # Its last lines may still be in the pipe: on a loaded machine reading them has
            # taken over 5 s (a CI run lost the final "stopped" event).
            self._reader.join(timeout=30)
        return [entry for entry in self.logs if entry.get("event") == name]


def _read_logs(stream, logs: list[dict]) -> None:
    for line in stream:
        logs.append(_log_entry(line))


def _log_entry(line: str) -> dict:
    """A log line's event; third-party noise on stderr as a ``stderr`` event. A C++ library
    writing to the same stream without ending its line leaves an event after its text: found
    there too."""
    for start in (0, line.find('{"')):
        if start >= 0:
            try:
                return json.loads(line[start:])
            except ValueError:
                pass
    return {"event": "stderr", "line": line.rstrip()}


@contextmanager
def serve_process(home: Path | None, *args: str, bind: str = "tcp://127.0.0.1:*",
                  timeout: float = 300.0) -> Iterator[ServerProcess]:
    """A running ``backend serve``, stopped with SIGTERM on exit."""
    server = ServerProcess.start(args, home=home, bind=bind, timeout=timeout)
    try:
        yield server
    finally:
        server.stop()
