"""Hostile HTTP clients (issue 25): a client that goes away mid-upload is a 499 "client closed request"
(counted as a 4xx, logged without a traceback, never a 5xx); clients stalled mid-upload hold no
admission slot, so an honest request still gets through; an oversized ``hotwords`` field is refused
naming the hotwords."""

from __future__ import annotations

import logging
import socket
import struct
import time

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx2")

from funasr_nano.server import ServerOptions  # noqa: E402

from .server_util import running_server, wait_for  # noqa: E402
from .test_server import EXAMPLE, PART_HEAD  # noqa: E402


def partial_upload(url: str, declared: int = 200_000, sent: int = 1000) -> socket.socket:
    """A socket that sent the headers of a ``declared``-byte upload and ``sent`` bytes of its body."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\nContent-Length: {declared}\r\n"
                 "Content-Type: multipart/form-data; boundary=x\r\n\r\n".encode() + PART_HEAD + b"\0" * sent)
    return sock


def health(url: str) -> dict:
    return httpx.get(url + "/health", timeout=10).json()


def test_client_gone_mid_upload_is_a_499_without_traceback(demo, caplog):
    with running_server(demo, ServerOptions(batch_window=0.0)) as (url, app):
        caplog.set_level(logging.INFO, logger="funasr_nano")
        partial_upload(url).close()  # closed after part of the body
        reset = partial_upload(url)
        reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        reset.close()  # connection reset
        status = wait_for(lambda: (lambda h: h if h["counters"]["client_closed"] >= 2 else None)(health(url)))
        assert status["counters"]["errors_5xx"] == 0 and status["counters"]["errors_4xx"] >= 2
        assert status["requests_active"] == 0
    assert not [r for r in caplog.records if r.exc_info or "internal error" in r.getMessage()]
    assert any("client closed request while sending its upload" in r.getMessage() for r in caplog.records)


def test_stalled_uploads_do_not_lock_out_honest_requests(demo):
    with running_server(demo, ServerOptions(max_queue=2, batch_window=0.0)) as (url, app):
        stalled = [partial_upload(url) for _ in range(8)]  # 4x the admission slots, all stalled mid-body
        try:
            time.sleep(0.3)
            client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
            began = time.monotonic()
            assert client.audio.transcriptions.create(file=EXAMPLE, model="m").text == demo.transcribe(EXAMPLE).text
            assert time.monotonic() - began < 30
            assert health(url)["requests_refused"] == 0
        finally:
            for sock in stalled:
                sock.close()


def test_uploads_have_their_own_bound(demo):
    with running_server(demo, ServerOptions(max_uploads=3, batch_window=0.0)) as (url, app):
        stalled = [partial_upload(url) for _ in range(3)]
        try:
            wait_for(lambda: app.state.server.uploads.active == 3)
            client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
            with pytest.raises(openai.RateLimitError) as caught:
                client.audio.transcriptions.create(file=EXAMPLE, model="m")
            assert "3 uploads in progress" in caught.value.body["message"]
        finally:
            for sock in stalled:
                sock.close()
        wait_for(lambda: app.state.server.uploads.active == 0)
        assert client.audio.transcriptions.create(file=EXAMPLE, model="m").text == demo.transcribe(EXAMPLE).text


def test_oversized_hotwords_are_named(demo):
    with running_server(demo, ServerOptions(batch_window=0.0)) as (url, app):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
        with pytest.raises(openai.BadRequestError) as caught:
            client.audio.transcriptions.create(file=EXAMPLE, model="m",
                                               extra_body={"hotwords": " ".join(f"词{i}" for i in range(20000))})
        body = caught.value.body
        assert body["param"] == "hotwords", body
        assert "hotwords" in body["message"] and "max_duration" not in body["message"], body
