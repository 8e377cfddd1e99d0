"""A real uvicorn server on a free localhost port, in a thread of the test process (stopped on exit)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Iterator


@contextlib.contextmanager
def running_server(model, options=None) -> Iterator[tuple[str, object]]:
    """``(base URL "http://127.0.0.1:PORT", the application)`` of ``model`` served with ``options``
    (:class:`funasr_nano.server.ServerOptions`); the socket is bound before the server starts, so the
    port is free and known."""
    import uvicorn

    from funasr_nano.server import create_app

    app = create_app(model, options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "the test server did not stop"


def wait_for(condition, timeout: float = 20.0, interval: float = 0.05):
    """Poll ``condition()`` until it returns something true; return it (``AssertionError`` on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
