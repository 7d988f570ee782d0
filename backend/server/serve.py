"""``backend serve``: build the estimators on the chosen device and run the server until
SIGINT/SIGTERM, then shut down cleanly (queued work answered or failed explicitly)."""

from __future__ import annotations

import logging
import signal

from ..device import choose_device
from . import logs
from .config import ServerConfig
from .estimators import Estimators
from .server import Server, check_bind

logger = logging.getLogger("backend.server")


def serve(config: ServerConfig, gpu: str | None = None, estimators: list[str] | None = None,
          ready=None, checkpoint: str | None = None, compile_regressor: bool = False,
          renderer: str | None = None, adapter: str | None = None) -> None:
    """Blocks until stopped. ``ready(server)`` is called once it listens (tests, benches)."""
    logs.configure()
    check_bind(config)

    def warn(message: str) -> None:
        logs.log_event(logger, "warning", logging.WARNING, message=message)

    device = choose_device(gpu, warn=warn)
    server = Server(Estimators(device, estimators, progress=lambda m: logs.log_event(
        logger, "asset", message=m), checkpoint=checkpoint,
        compile_regressor=compile_regressor, renderer=renderer, adapter=adapter), config)
    previous = {sig: signal.signal(sig, lambda *_: server.request_stop())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with logs.thread_failures_logged(logger):
            if ready is not None:
                ready(server)
            server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
