"""The realtime WebSocket (/v1/realtime) over real WebSocket clients (``websockets``, and the official
``openai`` client's realtime connection): PCM16 chunks of recordings in, partial (delta) then completed
events out, completed transcripts equal to offline transcription with the same VAD settings, a VAD
pause ends an item, commit ends one, live translation, bad events answered with error events."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

pytest.importorskip("fastapi")
websockets_sync = pytest.importorskip("websockets.sync.client")
openai = pytest.importorskip("openai")

from funasr_nano.audio.io import load_audio  # noqa: E402
from funasr_nano.audio.vad import VadOptions  # noqa: E402
from funasr_nano.server import ServerOptions  # noqa: E402

from .server_util import running_server  # noqa: E402
from .test_server import CLIPS, EXAMPLE  # noqa: E402


@pytest.fixture(scope="module")
def server(demo):
    with running_server(demo, ServerOptions(max_sessions=2)) as (url, app):
        yield url.replace("http://", "ws://") + "/v1/realtime", app


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def two_sentences() -> np.ndarray:
    silence = np.zeros(16000, dtype=np.float32)
    return np.concatenate([silence[:4000], load_audio(CLIPS[5]), silence, load_audio(CLIPS[6]), silence[:8000]])


def send(ws, event: dict) -> None:
    ws.send(json.dumps(event))


def receive_until(ws, done, timeout: float = 60.0) -> list[dict]:
    events = []
    while True:
        event = json.loads(ws.recv(timeout=timeout))
        events.append(event)
        if done(event, events):
            return events


def stream(ws, audio: np.ndarray, chunk_seconds: float = 0.1, odd: bool = False) -> None:
    data = pcm16(audio)
    step = int(chunk_seconds * 16000) * 2 + (1 if odd else 0)  # odd: chunks split samples in two
    for begin in range(0, len(data), step):
        send(ws, {"type": "input_audio_buffer.append", "audio": base64.b64encode(data[begin:begin + step]).decode()})


def test_partials_then_completed_items_equal_offline(demo, server):
    url, _ = server
    audio = two_sentences()
    expected = demo.transcribe(audio, vad=True, vad_options=VadOptions(max_merge_gap=0.5))
    assert len(expected.segments) == 2
    with websockets_sync.connect(url + "?intent=transcription") as ws:
        created = json.loads(ws.recv(timeout=30))
        assert created["type"] == "session.created" and created["session"]["type"] == "transcription"
        send(ws, {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 16000},
            "transcription": {"model": "funasr-nano-demo", "chunk_duration": 0.4, "rollback_tokens": 2},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}}})
        updated = json.loads(ws.recv(timeout=30))
        assert updated["type"] == "session.updated"
        assert updated["session"]["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 500
        stream(ws, audio, odd=True)
        send(ws, {"type": "input_audio_buffer.commit"})
        completed = []
        events = receive_until(ws, lambda e, _: e["type"].endswith(".completed") and completed.append(e) is None
                               and len(completed) == 2)
    assert [e["transcript"] for e in completed] == [s.text for s in expected.segments]
    assert [(e["start"], e["end"]) for e in completed] == [(round(s.start, 3), round(s.end, 3))
                                                            for s in expected.segments]
    for item in completed:  # per item: started, partial previews, stopped, committed, completed
        kinds = [e["type"] for e in events if e.get("item_id") == item["item_id"]]
        assert kinds[0] == "input_audio_buffer.speech_started"
        assert kinds.index("conversation.item.input_audio_transcription.delta") < kinds.index(
            "input_audio_buffer.speech_stopped")
        assert kinds[-3:-1] in (["input_audio_buffer.committed", "conversation.item.input_audio_transcription.delta"],
                                ["input_audio_buffer.speech_stopped", "input_audio_buffer.committed"])
        assert kinds[-1] == "conversation.item.input_audio_transcription.completed"
    # the first item ended at the pause, while the second was still being streamed
    first_done = events.index(completed[0])
    assert any(e["type"] == "input_audio_buffer.speech_started" and e["item_id"] == completed[1]["item_id"]
               for e in events[first_done:])
    committed = [e for e in events if e["type"] == "input_audio_buffer.committed"]
    assert committed[1]["previous_item_id"] == committed[0]["item_id"]


def test_official_openai_realtime_client_and_live_translation(demo, server):
    url, _ = server
    client = openai.OpenAI(base_url=url.replace("ws://", "http://").rsplit("/realtime", 1)[0], api_key="unused")
    audio = load_audio(EXAMPLE)
    expected = demo.transcribe(audio, vad=True)
    with client.realtime.connect(model="funasr-nano-demo", extra_query={"intent": "transcription"}) as connection:
        connection.send({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 16000}}}}})
        data = pcm16(audio)
        for begin in range(0, len(data), 6400):
            connection.send({"type": "input_audio_buffer.append",
                             "audio": base64.b64encode(data[begin:begin + 6400]).decode()})
        connection.send({"type": "input_audio_buffer.commit"})
        for event in connection:
            if event.type == "conversation.item.input_audio_transcription.completed":
                assert event.transcript == expected.text
                break

    translation = demo.translate(EXAMPLE)
    with websockets_sync.connect(url) as ws:
        ws.recv(timeout=30)
        send(ws, {"type": "transcription_session.update", "session": {
            "input_audio_transcription": {"model": "funasr-nano-demo", "task": "translate"}}})
        assert json.loads(ws.recv(timeout=30))["type"] == "transcription_session.updated"
        # beta format: 24 kHz PCM16, resampled by the session
        import soxr

        stream_24k = soxr.resample(audio, 16000, 24000)
        data = pcm16(stream_24k)
        for begin in range(0, len(data), 9600):
            send(ws, {"type": "input_audio_buffer.append", "audio": base64.b64encode(data[begin:begin + 9600]).decode()})
        send(ws, {"type": "input_audio_buffer.commit"})
        events = receive_until(ws, lambda e, _: e["type"].endswith(".completed"))
    assert events[-1]["transcript"] == translation.text


def test_bad_events_get_error_events_and_the_session_goes_on(server):
    url, app = server
    with websockets_sync.connect(url) as ws:
        ws.recv(timeout=30)
        ws.send("not json")
        error = json.loads(ws.recv(timeout=30))
        assert error["type"] == "error" and error["error"]["code"] == "invalid_json"
        send(ws, {"type": "response.create", "event_id": "evt_1"})
        error = json.loads(ws.recv(timeout=30))["error"]
        assert (error["code"], error["event_id"]) == ("unknown_event", "evt_1")
        send(ws, {"type": "input_audio_buffer.commit"})
        assert json.loads(ws.recv(timeout=30))["error"]["code"] == "input_audio_buffer_commit_empty"
        send(ws, {"type": "input_audio_buffer.append", "audio": "%%%"})
        assert json.loads(ws.recv(timeout=30))["error"]["param"] == "audio"
        send(ws, {"type": "session.update", "session": {"audio": {"input": {"transcription": {"language": "xx"}}}}})
        assert json.loads(ws.recv(timeout=30))["error"]["param"] == "language"
        send(ws, {"type": "session.update", "session": {"audio": {"input": {"transcription": {"max_new_tokens": 0}}}}})
        assert json.loads(ws.recv(timeout=30))["error"]["param"] == "max_new_tokens"
        ws.send(b"\x00\x01")
        assert json.loads(ws.recv(timeout=30))["error"]["code"] == "invalid_event"
        # silence only: the commit gives an empty item
        send(ws, {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0" * 48000).decode()})
        send(ws, {"type": "input_audio_buffer.commit"})
        events = receive_until(ws, lambda e, _: e["type"].endswith(".completed"))
        assert events[-1]["transcript"] == ""
        send(ws, {"type": "input_audio_buffer.clear"})
        assert json.loads(ws.recv(timeout=30))["type"] == "input_audio_buffer.cleared"
    # a third session while two are open is refused
    with websockets_sync.connect(url) as one, websockets_sync.connect(url) as two:
        one.recv(timeout=30), two.recv(timeout=30)
        with websockets_sync.connect(url) as three:
            error = json.loads(three.recv(timeout=30))
            assert error["type"] == "error" and error["error"]["code"] == "rate_limit_exceeded"
    assert app.state.server.health()["counters"]["errors_5xx"] == 0
