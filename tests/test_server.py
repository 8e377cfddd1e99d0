"""The OpenAI-compatible server (funasr_nano.server): a real uvicorn server on a free localhost port,
driven by the official ``openai`` client (and raw HTTP for what the client cannot send), on the
embedded demo model: every response format equals ``model.transcribe``, streamed deltas arrive as the
model decodes and join to the final text, translations, errors as OpenAI's JSON, limits (413, 429),
disconnects that cancel generation, and 16 concurrent clients."""

from __future__ import annotations

import concurrent.futures
import io
import json
import pathlib
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx2")

from funasr_nano.audio.io import load_audio  # noqa: E402
from funasr_nano.server import ServerOptions  # noqa: E402

from .conftest import ROOT  # noqa: E402
from .server_util import running_server, wait_for  # noqa: E402

HELDOUT = ROOT / "tests" / "data" / "demo_heldout"
EXAMPLE = ROOT / "examples" / "demo_zh.wav"
CLIPS = sorted(HELDOUT.glob("*.flac"))
PART_HEAD = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'


@pytest.fixture(scope="module")
def server(demo):
    with running_server(demo, ServerOptions(max_queue=32, batch_window=0.02)) as (url, app):
        yield url, app


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0, timeout=60)


def health(url: str) -> dict:
    return httpx.get(url + "/health", timeout=10).json()


def two_sentences(tmp_path: pathlib.Path) -> pathlib.Path:
    """Two held-out clips with 2.5 s of silence between them (more than the VAD's max_merge_gap: two
    segments)."""
    import soundfile

    silence = np.zeros(40000, dtype=np.float32)
    audio = np.concatenate([silence[:8000], load_audio(CLIPS[3]), silence, load_audio(CLIPS[4]), silence[:8000]])
    path = tmp_path / "two.wav"
    soundfile.write(path, audio, 16000)
    return path


# -- formats -------------------------------------------------------------------------------------------


def test_every_response_format_equals_model_transcribe(demo, client):
    import srt
    import webvtt

    expected = demo.transcribe(EXAMPLE)
    with open(EXAMPLE, "rb") as file:
        result = client.audio.transcriptions.create(file=file, model="funasr-nano-demo")
    assert result.text == expected.text == "你看起来很紧张。"
    assert result.usage.seconds == pytest.approx(expected.duration, abs=1e-3)

    text = client.audio.transcriptions.create(file=EXAMPLE, model="m", response_format="text")
    assert text == expected.text + "\n"

    subtitles = list(srt.parse(client.audio.transcriptions.create(file=EXAMPLE, model="m", response_format="srt")))
    assert [cue.content for cue in subtitles] == [expected.text]
    assert subtitles[0].end.total_seconds() == pytest.approx(expected.duration, abs=1e-3)

    vtt = client.audio.transcriptions.create(file=EXAMPLE, model="m", response_format="vtt")
    captions = list(webvtt.from_buffer(io.StringIO(vtt)))
    assert [caption.text for caption in captions] == [expected.text]

    verbose = client.audio.transcriptions.create(file=EXAMPLE, model="m", response_format="verbose_json",
                                                 timestamp_granularities=["segment"], language="zh")
    assert verbose.text == expected.text and verbose.language == "zh"
    assert verbose.duration == pytest.approx(expected.duration, abs=1e-3)
    assert [(s.start, s.end, s.text, tuple(s.tokens)) for s in verbose.segments] == [
        (0.0, round(expected.duration, 3), expected.text, expected.tokens)]
    assert verbose.segments[0].compression_ratio > 0
    # the LLM's confidence survives the server's batching scheduler (rounded to 4 digits)
    in_zh = demo.transcribe(EXAMPLE, language="zh").segments[0]  # the language is in the prompt
    assert verbose.segments[0].avg_logprob == pytest.approx(in_zh.avg_logprob, abs=2e-4)


def test_long_audio_with_vad_and_extension_fields(demo, client, tmp_path):
    path = two_sentences(tmp_path)
    expected = demo.transcribe(path, vad=True, hotwords=["紧张"], itn=False)
    assert len(expected.segments) == 2
    with open(path, "rb") as file:
        verbose = client.audio.transcriptions.create(
            file=file, model="m", response_format="verbose_json", prompt="紧张",
            extra_body={"vad": "true", "itn": "false"})
    assert verbose.text == expected.text
    assert [(s.start, s.end, tuple(s.tokens)) for s in verbose.segments] == [
        (round(s.start, 3), round(s.end, 3), s.tokens) for s in expected.segments]


def test_stream_deltas_arrive_as_decoded_and_join_to_the_text(demo, client, tmp_path):
    # 48 tokens at least (end of turn suppressed before), so that decoding takes a while
    expected = demo.transcribe(EXAMPLE, min_new_tokens=48)
    events, times = [], []
    began = time.perf_counter()
    stream = client.audio.transcriptions.create(file=EXAMPLE, model="m", stream=True,
                                                extra_body={"min_new_tokens": 48})
    for event in stream:
        events.append(event)
        times.append(time.perf_counter() - began)
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert [e.type for e in events] == ["transcript.text.delta"] * len(deltas) + ["transcript.text.done"]
    assert len(deltas) >= 4, events
    assert "".join(d.delta for d in deltas) == events[-1].text == expected.text
    assert times[0] < times[-1], "the first delta arrived with the last event: not streamed"

    # VAD: segments stream one after the other, joined as model.transcribe joins them
    path = two_sentences(tmp_path)
    expected = demo.transcribe(path, vad=True)
    events = list(client.audio.transcriptions.create(file=path, model="m", stream=True, response_format="text",
                                                     chunking_strategy="auto"))
    assert "".join(e.delta for e in events[:-1]) == events[-1].text == expected.text


def test_translations(demo, client):
    expected = demo.translate(EXAMPLE)
    assert client.audio.translations.create(file=EXAMPLE, model="m").text == expected.text
    subtitles = client.audio.translations.create(file=EXAMPLE, model="m", response_format="srt")
    import srt

    assert " ".join(cue.content for cue in srt.parse(subtitles)) == expected.text
    verbose = client.audio.translations.create(file=EXAMPLE, model="m", response_format="verbose_json")
    assert verbose.text == expected.text and verbose.language == "en"
    cascade = demo.translate(EXAMPLE, mode="cascade")
    text = client.audio.translations.create(file=EXAMPLE, model="m", response_format="text",
                                            extra_body={"mode": "cascade"})
    assert text == cascade.text + "\n"


def test_models_and_health(client, server):
    models = client.models.list()
    assert [m.id for m in models.data] == ["funasr-nano-demo"]
    assert client.models.retrieve("funasr-nano-demo").id == "funasr-nano-demo"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("whisper-1")
    status = health(server[0])
    assert status["status"] == "ok" and status["model"] == "funasr-nano-demo"
    assert status["limits"]["max_queue"] == 32


# -- errors ------------------------------------------------------------------------------------------------


def _error(call) -> tuple[int, dict]:
    with pytest.raises(openai.APIStatusError) as caught:
        call()
    return caught.value.status_code, caught.value.body


def test_bad_input_gets_400_with_openai_error_json(client, server):
    status, body = _error(lambda: client.audio.transcriptions.create(file=("broken.wav", b"RIFF" + b"\x07" * 5000),
                                                                     model="m"))
    assert status == 400 and body["param"] == "file" and "broken.wav" in body["message"]
    assert set(body) == {"message", "type", "param", "code"} and body["type"] == "invalid_request_error"
    status, body = _error(lambda: client.audio.transcriptions.create(file=EXAMPLE, model="m", response_format="xml"))
    assert (status, body["param"]) == (400, "response_format") and "xml" in body["message"]
    status, body = _error(lambda: client.audio.transcriptions.create(file=EXAMPLE, model="m", language="xx"))
    assert (status, body["param"], body["code"]) == (400, "language", "unsupported_language")
    status, body = _error(lambda: client.audio.transcriptions.create(
        file=EXAMPLE, model="m", extra_body={"max_new_tokens": "many"}))
    assert (status, body["param"]) == (400, "max_new_tokens") and "'many'" in body["message"]
    status, body = _error(lambda: client.audio.transcriptions.create(file=EXAMPLE, model="m", temperature=-1))
    assert (status, body["param"]) == (400, "temperature")
    status, body = _error(lambda: client.audio.transcriptions.create(file=EXAMPLE, model="m",
                                                                     extra_body={"beam_sise": 2}))
    assert (status, body["param"], body["code"]) == (400, "beam_sise", "unknown_parameter")
    status, body = _error(lambda: client.audio.transcriptions.create(file=EXAMPLE, model="m",
                                                                     timestamp_granularities=["word"]))
    assert (status, body["param"]) == (400, "timestamp_granularities")
    status, body = _error(lambda: client.audio.transcriptions.create(file=("short.wav", _wav(0.05)), model="m"))
    assert (status, body["code"]) == (400, "audio_too_short") and "short.wav" in body["message"]
    status, body = _error(lambda: client.audio.transcriptions.create(
        file=("long.wav", _wav(40.0)), model="m", extra_body={"vad": "false"}))
    assert (status, body["code"]) == (400, "audio_too_long")
    status, body = _error(lambda: client.audio.translations.create(file=EXAMPLE, model="m",
                                                                   extra_body={"target_language": "fr"}))
    assert status == 400 and "fr" in body["message"]

    url = server[0]
    response = httpx.post(url + "/v1/audio/transcriptions", data={"model": "m"}, files={"other": ("a", b"x")})
    assert response.status_code == 400 and response.json()["error"]["param"] == "file"
    response = httpx.post(url + "/v1/audio/transcriptions", content=b'{"file": 1}',
                          headers={"content-type": "application/json"})
    assert response.status_code == 400 and "multipart" in response.json()["error"]["message"]
    response = httpx.get(url + "/v1/nothing")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert health(url)["counters"]["errors_5xx"] == 0


def _wav(seconds: float) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    t = np.arange(int(seconds * 16000)) / 16000
    soundfile.write(buffer, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, format="WAV")
    return buffer.getvalue()


def test_upload_limit_queue_limit_and_disconnects(demo):
    options = ServerOptions(max_upload_mb=0.5, max_queue=1, batch_window=0.0)
    with running_server(demo, options) as (url, app):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        big = b"\0" * (1 << 20)
        status, body = _error(lambda: client.audio.transcriptions.create(file=("big.wav", big), model="m"))
        assert (status, body["code"], body["param"]) == (413, "file_too_large", "file")
        # without Content-Length (chunked): counted while reading
        response = httpx.post(url + "/v1/audio/transcriptions", content=iter([PART_HEAD] + [big[:65536]] * 16),
                              headers={"content-type": "multipart/form-data; boundary=x"})
        assert response.status_code == 413 and response.json()["error"]["code"] == "file_too_large"

        # a long generation holds the only place in the queue; a second request gets 429 with Retry-After
        stream = client.audio.transcriptions.create(file=EXAMPLE, model="m", stream=True,
                                                    extra_body={"min_new_tokens": 500, "max_new_tokens": 512,
                                                                "repetition_guard": "false"})
        first = next(iter(stream))
        assert first.type == "transcript.text.delta"
        with pytest.raises(openai.RateLimitError) as caught:
            client.audio.transcriptions.create(file=EXAMPLE, model="m")
        assert int(caught.value.response.headers["retry-after"]) >= 1
        assert caught.value.body["code"] == "rate_limit_exceeded"
        # the client goes away mid-stream: its generation stops (counted), the queue frees up
        stream.close()
        status = wait_for(lambda: (lambda h: h if h["batching"]["cancelled_calls"] >= 1
                                   and h["requests_active"] == 0 else None)(health(url)))
        assert status["counters"]["cancelled"] == 1
        assert 0 < status["batching"]["cancelled_tokens"] < 500
        assert client.audio.transcriptions.create(file=EXAMPLE, model="m").text == demo.transcribe(EXAMPLE).text

        # a non-streaming request whose client times out is cancelled too
        with pytest.raises(httpx.TimeoutException):
            httpx.post(url + "/v1/audio/transcriptions", timeout=0.5,
                       files={"file": ("a.wav", EXAMPLE.read_bytes())},
                       data={"min_new_tokens": "500", "max_new_tokens": "512", "repetition_guard": "false"})
        status = wait_for(lambda: (lambda h: h if h["batching"]["cancelled_calls"] >= 2
                                   and h["requests_active"] == 0 else None)(health(url)))
        assert status["counters"]["cancelled"] == 2
        assert status["batching"]["cancelled_tokens"] < 1000


# -- load --------------------------------------------------------------------------------------------------


def test_sixteen_concurrent_clients_all_correct_and_batched(demo, server):
    url, app = server
    files = CLIPS[:16]
    expected = {path.name: demo.transcribe(path).text for path in files}
    before = health(url)["batching"]
    barrier = threading.Barrier(len(files))

    def ask(path: pathlib.Path) -> tuple[str, str]:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
        barrier.wait()
        with open(path, "rb") as file:
            return path.name, client.audio.transcriptions.create(file=file, model="funasr-nano-demo").text

    with concurrent.futures.ThreadPoolExecutor(len(files)) as pool:
        answers = dict(pool.map(ask, files))
    assert answers == expected
    after = health(url)
    assert after["counters"]["errors_5xx"] == 0
    assert after["batching"]["calls"] - before["calls"] == 16
    assert after["batching"]["batches"] - before["batches"] < 16, "no two requests were decoded together"
    assert after["batching"]["max_rows"] > 1
