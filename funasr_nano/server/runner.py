"""Running the application under uvicorn with the server's limits, and the graceful shutdown.

:func:`uvicorn_config` turns :class:`~funasr_nano.server.ServerOptions` into uvicorn's settings: at most
``max_connections`` open connections (more get 503), idle keep-alive connections closed after
``keep_alive_timeout``, WebSocket pings every ``ws_ping_interval`` seconds (a client that does not
answer within as long is dropped).

:class:`GracefulServer` drains on SIGTERM/SIGINT, as vLLM and Kubernetes' rolling restarts expect: the
server stops admitting (new requests and realtime sessions get 503 with OpenAI's error JSON and
``Retry-After``; ``GET /health`` answers 503 ``draining`` so that load balancers look elsewhere), lets the
requests in flight (uploads included) and the realtime items in progress finish, for at most
``shutdown_timeout`` seconds, then stops and the process exits 0. A second signal exits at once
(status 128 + the signal's number, as a process killed by it).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    from .app import ServerState
    from .config import ServerOptions

logger = logging.getLogger(__name__)

GRACE_AFTER_DRAIN = 5  # seconds uvicorn gives connections left after the drain (then cancels them)


def uvicorn_config(app, options: "ServerOptions", *, log_level: str = "warning", access_log: bool = False) -> uvicorn.Config:
    """uvicorn's settings for ``app`` under ``options``' connection limits."""
    return uvicorn.Config(app, log_level=log_level, access_log=access_log, limit_concurrency=options.max_connections,
                          timeout_keep_alive=options.keep_alive_timeout, ws_ping_interval=options.ws_ping_interval,
                          ws_ping_timeout=options.ws_ping_interval, timeout_graceful_shutdown=GRACE_AFTER_DRAIN)


class GracefulServer(uvicorn.Server):
    """A uvicorn server that drains before it stops (module docstring).

    Args:
        config: from :func:`uvicorn_config`.
        state: the application's :class:`~funasr_nano.server.app.ServerState` (``app.state.server``).
    """

    def __init__(self, config: uvicorn.Config, state: "ServerState"):
        super().__init__(config)
        self.state = state
        self.drain_thread: threading.Thread | None = None

    def handle_exit(self, sig: int, frame) -> None:  # uvicorn's signal handler
        if self.drain_thread is not None:
            logger.warning("second %s: exiting now", signal.Signals(sig).name)
            os._exit(128 + sig)
        self.begin_drain(signal.Signals(sig).name)

    def begin_drain(self, reason: str = "shutdown") -> None:
        """Stop admitting and stop the server once the work in flight is done (or after
        ``shutdown_timeout``); returns at once."""
        state = self.state
        state.draining = True
        logger.info("%s: draining (%d requests and %d realtime sessions in flight; up to %g s)", reason,
                    state.open_requests, state.sessions.active, state.options.shutdown_timeout)
        self.drain_thread = threading.Thread(target=self._drain, name="funasr-nano-drain", daemon=True)
        self.drain_thread.start()

    def _drain(self) -> None:
        state = self.state
        deadline = time.monotonic() + state.options.shutdown_timeout
        while state.busy() and time.monotonic() < deadline:
            time.sleep(0.05)
        if state.busy():
            logger.warning("shutdown timeout (%g s): stopping with %d requests and %d realtime sessions in flight",
                           state.options.shutdown_timeout, state.open_requests, state.sessions.active)
        else:
            logger.info("drained: stopping")
        self.should_exit = True
