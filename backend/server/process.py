"""Start ``backend serve`` as a child process and learn where it listens (benches, tests).

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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ServeError


@dataclass
class ServerProcess:
    process: subprocess.Popen
    endpoint: str
    logs: list[dict] = field(default_factory=list)

    def rss_mb(self) -> float:
        """Resident memory of the server process (Linux)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise ServeError("the server's memory use is not readable from /proc")

    def events(self, name: str) -> list[dict]:
        return [entry for entry in self.logs if entry.get("event") == name]


def _read_logs(stream, logs: list[dict]) -> None:
    for line in stream:
        try:
            logs.append(json.loads(line))
        except ValueError:  # third-party noise on stderr
            logs.append({"event": "stderr", "line": line.rstrip()})


@contextmanager
def serve_process(home: Path | None, *args: str, bind: str = "tcp://127.0.0.1:*",
                  timeout: float = 300.0) -> Iterator[ServerProcess]:
    """A running ``backend serve --bind BIND ARGS`` using data dir ``home`` (None: this
    process's PEAR_HOME); stopped with SIGTERM on exit."""
    env = dict(os.environ)
    if home is not None:
        env["PEAR_HOME"] = str(home)
    process = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--bind", bind,
                                *args], env=env, stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True)
    logs: list[dict] = []
    reader = threading.Thread(target=_read_logs, args=(process.stderr, logs), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    server = None
    try:
        while server is None:
            serving = [e for e in logs if e.get("event") == "serving"]
            if serving:
                server = ServerProcess(process, serving[0]["endpoint"], logs)
            elif process.poll() is not None or time.monotonic() > deadline:
                reader.join(timeout=2)
                raise ServeError(f"backend serve did not start: {logs[-20:]}")
            else:
                time.sleep(0.05)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(timeout=5)
