"""``GET /metrics`` (funasr_nano.server.metrics): Prometheus' text format, parsed by prometheus-client's
own parser; the counters move with a request (HTTP, streamed, realtime) and with a refusal (401)."""

from __future__ import annotations

import base64
import json

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx2")
websockets_sync = pytest.importorskip("websockets.sync.client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from funasr_nano.audio.io import load_audio  # noqa: E402
from funasr_nano.server import ServerOptions  # noqa: E402

from .server_util import running_server  # noqa: E402
from .test_server import EXAMPLE  # noqa: E402

KEY = "sk-metrics"
ROUTE = "/v1/audio/transcriptions"


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of ``GET /metrics``."""
    response = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        assert family.name.startswith("funasr_nano_") or family.name.startswith(("python_", "process_")), family.name
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_move_with_requests(demo):
    with running_server(demo, ServerOptions(api_key=(KEY,), batch_window=0.0)) as (url, app):
        before = scrape(url)
        assert before[("funasr_nano_requests_in_flight", ())] == 0
        assert before[("funasr_nano_generated_tokens_total", ())] == 0
        client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=60)
        client.audio.transcriptions.create(file=EXAMPLE, model="m")
        deltas = [event for event in client.audio.transcriptions.create(file=EXAMPLE, model="m", stream=True)
                  if event.type == "transcript.text.delta"]
        assert deltas
        assert httpx.get(url + "/v1/models", timeout=10).status_code == 401
        with websockets_sync.connect(url.replace("http://", "ws://") + "/v1/realtime", open_timeout=30,
                                     additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
            ws.recv(timeout=30)
            pcm = (load_audio(EXAMPLE) * 32767).astype("<i2").tobytes()
            ws.send(json.dumps({"type": "session.update", "session": {"audio": {"input": {"format": {
                "type": "audio/pcm", "rate": 16000}}}}}))
            ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}))
            ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            while json.loads(ws.recv(timeout=60))["type"] != "conversation.item.input_audio_transcription.completed":
                pass
        after = scrape(url)
    seconds = demo.transcribe(EXAMPLE).duration
    assert after[("funasr_nano_http_requests_total", (("route", ROUTE), ("status", "200")))] == 2
    assert after[("funasr_nano_http_requests_total", (("route", "/v1/models"), ("status", "401")))] == 1
    assert after[("funasr_nano_http_requests_total", (("route", "/v1/realtime"), ("status", "101")))] == 1
    assert after[("funasr_nano_http_request_duration_seconds_count", (("route", ROUTE),))] == 2
    assert after[("funasr_nano_audio_seconds_total", (("route", ROUTE),))] == pytest.approx(2 * seconds)
    assert after[("funasr_nano_audio_seconds_total", (("route", "/v1/realtime"),))] == pytest.approx(seconds, abs=0.01)
    assert after[("funasr_nano_time_to_first_delta_seconds_count", (("route", ROUTE),))] == 1
    assert after[("funasr_nano_realtime_sessions_total", ())] == 1
    assert after[("funasr_nano_realtime_sessions_active", ())] == 0
    assert after[("funasr_nano_generated_tokens_total", ())] > 0
    assert after[("funasr_nano_batch_size_count", ())] >= 3
    assert after[("funasr_nano_batch_size_bucket", (("le", "+Inf"),))] == after[("funasr_nano_batch_size_count", ())]
    assert after[("funasr_nano_cancellations_total", ())] == 0 and after[("funasr_nano_queue_depth", ())] == 0
