"""Run ``backend serve`` as a real subprocess for tests, and find out where it listens."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ServerProcess:
    process: subprocess.Popen
    endpoint: str
    logs: list[dict] = field(default_factory=list)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def events(self, name: str) -> list[dict]:
        return [entry for entry in self.logs if entry.get("event") == name]


def _read_logs(stream, logs: list[dict]) -> None:
    for line in stream:
        try:
            logs.append(json.loads(line))
        except ValueError:
            logs.append({"event": "stderr", "line": line.rstrip()})


@contextmanager
def serve_process(home: Path, *args: str, bind: str = "tcp://127.0.0.1:*",
                  timeout: float = 120.0):
    """A running ``backend serve --bind BIND ARGS``; stopped with SIGTERM on exit."""
    env = dict(os.environ, PEAR_HOME=str(home))
    process = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--bind", bind,
                                *args], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               text=True)
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
                raise RuntimeError(f"backend serve did not start: {logs[-20:]}")
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


def local_endpoint(endpoint: str) -> str:
    """Where to connect to a server that bound a wildcard address."""
    port = endpoint.rsplit(":", 1)[1]
    return f"tcp://127.0.0.1:{port}"


def noise_frames(count: int, seed: int, size: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    """Small random RGB frames: cheap for the detector, enough to exercise the transport."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (*size, 3), dtype=np.uint8) for _ in range(count)]
