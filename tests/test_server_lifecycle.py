"""Graceful shutdown and slow clients (funasr_nano.server.runner, the request timeout, uvicorn's limits):
SIGTERM with a request in flight lets it finish with 200 while new ones get 503 and the process exits 0;
a second signal exits at once; a slow-body client gets 408; a slow-body client and 50 idle connections
do not stop a normal request; an idle realtime session is closed."""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx2")
websockets_sync = pytest.importorskip("websockets.sync.client")

from funasr_nano.server import ServerOptions  # noqa: E402

from .server_util import running_server, wait_for  # noqa: E402
from .test_server import EXAMPLE, PART_HEAD  # noqa: E402
from .test_server_cli import serve  # noqa: E402

# ~5 s on the light runtime (the demo model decodes ~1,100 tokens/s there): the drain checks run while it decodes
LONG = {"min_new_tokens": "6000", "max_new_tokens": "6000", "repetition_guard": "false"}


def started(process) -> str:
    line = process.stderr.readline()
    if "embedded demo model" in line:  # no --model: the demo-model notice comes first
        line = process.stderr.readline()
    match = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
    assert match, line
    return match.group(1)


def long_request(url: str, results: list) -> threading.Thread:
    def run():
        try:
            results.append(httpx.post(url + "/v1/audio/transcriptions", files={"file": ("a.wav", EXAMPLE.read_bytes())},
                                      data=LONG, timeout=240))
        except httpx.TransportError:  # the server exited first
            pass
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def in_flight(url: str) -> bool:
    return httpx.get(url + "/health", timeout=10).json()["requests_active"] == 1


def test_sigterm_drains_the_request_in_flight_then_exits_0():
    # a generous drain limit: the in-flight request must finish on a loaded 2-core machine too (at 60 s it did not)
    process = serve("--port", "0", "--shutdown-timeout", "180")
    try:
        url = started(process)
        realtime = url.replace("http://", "ws://") + "/v1/realtime"
        session = websockets_sync.connect(realtime, open_timeout=30).__enter__()  # closed by the server below
        assert json.loads(session.recv(timeout=30))["type"] == "session.created"
        results: list = []
        thread = long_request(url, results)
        wait_for(lambda: in_flight(url))
        process.send_signal(signal.SIGTERM)
        health = wait_for(lambda: (lambda r: r if r.status_code == 503 else None)(httpx.get(url + "/health", timeout=10)))
        assert health.json()["status"] == "draining"
        from websockets.exceptions import ConnectionClosed

        with pytest.raises(ConnectionClosed) as closed:  # an idle session is closed between items
            session.recv(timeout=10)
        assert closed.value.rcvd.code == 1012
        with pytest.raises(websockets_sync.InvalidStatus) as refused_session:
            websockets_sync.connect(realtime, open_timeout=30)
        assert refused_session.value.response.status_code == 503
        refused = httpx.post(url + "/v1/audio/transcriptions", files={"file": ("a.wav", EXAMPLE.read_bytes())},
                             timeout=30)
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "service_unavailable"
        thread.join(timeout=240)
        assert results and results[0].status_code == 200 and results[0].json()["text"]
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()


def test_a_second_signal_exits_at_once():
    process = serve("--port", "0", "--shutdown-timeout", "60")
    try:
        url = started(process)
        results: list = []
        long_request(url, results)
        wait_for(lambda: in_flight(url))
        process.send_signal(signal.SIGTERM)
        wait_for(lambda: httpx.get(url + "/health", timeout=10).status_code == 503)
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 128 + signal.SIGTERM
        assert time.monotonic() - began < 10 and not results  # the long request did not finish first
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()


def slow_body(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100000\r\n"
                 "Content-Type: multipart/form-data; boundary=x\r\n\r\n".encode() + PART_HEAD)
    return sock


def test_slow_clients_and_idle_connections(demo):
    with running_server(demo, ServerOptions(request_timeout=1.0, max_queue=2, batch_window=0.0)) as (url, app):
        host, port = url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(50)]
        slow = slow_body(url)
        try:
            for _ in range(3):  # a byte now and then: never complete
                slow.sendall(b"\0")
                time.sleep(0.2)
            client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
            began = time.monotonic()
            assert client.audio.transcriptions.create(file=EXAMPLE, model="m").text == demo.transcribe(EXAMPLE).text
            assert time.monotonic() - began < 30
            answer = slow.recv(65536).decode()  # the slow client was answered 408 after request_timeout
            assert answer.startswith("HTTP/1.1 408") and '"code":"request_timeout"' in answer.replace(" ", "")
        finally:
            slow.close()
            for sock in idle:
                sock.close()


def test_idle_realtime_session_is_closed(demo):
    with running_server(demo, ServerOptions(realtime_idle_timeout=0.5)) as (url, app):
        with websockets_sync.connect(url.replace("http://", "ws://") + "/v1/realtime", open_timeout=30) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "session.created"
            event = json.loads(ws.recv(timeout=10))
            assert event["type"] == "error" and event["error"]["code"] == "idle_timeout"
            from websockets.exceptions import ConnectionClosedOK

            with pytest.raises(ConnectionClosedOK):
                ws.recv(timeout=10)
