"""``backend serve``'s settings and their defaults, in one place: the server runs on them and
the command line shows and parses them (without importing ZeroMQ or torch, so ``backend
--help`` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..conventions import DEFAULT_SERVER_ADDRESS


@dataclass
class ServerConfig:
    bind: str = DEFAULT_SERVER_ADDRESS
    keys: Path | None = None  # a `backend keys generate` folder: CURVE on, clients checked
    window: int = 32  # frames in flight per session
    max_batch: int = 8  # frames the worker takes at a time across sessions (one regressor forward)
    max_sessions: int = 64
    # Live captures of sources the server opens (a camera, a stream): each takes a core's
    # worth of answering, so a few at most.
    max_captures: int = 2
    session_timeout: float = 120.0  # seconds without a message before a session is reclaimed
    shutdown_grace: float = 30.0  # seconds to finish queued work on SIGINT/SIGTERM
