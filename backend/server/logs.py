"""Structured logs: one JSON object per line on stderr, easy to grep and to ship."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields) -> None:
    logger.log(level, json.dumps({"event": event, **fields}, default=str))


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        try:
            entry = json.loads(message)
            if not isinstance(entry, dict):
                raise ValueError
        except ValueError:
            entry = {"event": "message", "message": message}
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
                 "level": record.levelname.lower(), **entry}
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_stream = None


def _log_stream():
    """A private copy of file descriptor 2, made once: MediaPipe's native noise is silenced
    by pointing fd 2 at /dev/null for a moment (perception/face_mesh.py), and a log line
    another thread writes in that moment must still arrive."""
    global _stream
    if _stream is None:
        _stream = os.fdopen(os.dup(2), "w", buffering=1)
    return _stream


def configure(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(_log_stream())
    handler.setFormatter(JsonLines())
    root = logging.getLogger("backend")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


@contextmanager
def thread_failures_logged(logger: logging.Logger) -> Iterator[None]:
    """While inside, an exception that ends a thread is logged as a ``thread.failed`` event
    with its traceback, on the log stream: Python would print it raw to file descriptor 2,
    which the MediaPipe silencing may point at /dev/null at that moment."""
    previous = threading.excepthook

    def log_failure(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        logger.error(json.dumps({"event": "thread.failed",
                                 "thread": args.thread.name if args.thread else None,
                                 "error": f"{args.exc_type.__name__}: {args.exc_value}"}),
                     exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    threading.excepthook = log_failure
    try:
        yield
    finally:
        threading.excepthook = previous
