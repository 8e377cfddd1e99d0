"""``timestamp_granularities[]=word`` through the official ``openai`` client: OpenAI's ``words`` array from
Fun-ASR-Nano's CTC alignment, and a clear 400 for a checkpoint without the CTC branch."""

from __future__ import annotations

import pytest

from funasr_nano import load_model
from funasr_nano.server import ServerOptions
from funasr_nano.testing.tiny import TinyConfig, write_tiny_checkpoint

from .server_util import running_server

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def ctc_model(tmp_path_factory):
    return load_model(write_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny-ctc")), "official",
                                            TinyConfig(ctc=True), seed=5))


def _client(url):
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_word_granularity_returns_openai_words(ctc_model, binhai):
    expected = ctc_model.transcribe(binhai, word_timestamps=True, max_new_tokens=16)
    words = [(w.word.strip(), w.start, w.end) for s in expected.segments for w in s.words if w.word.strip()]
    assert words
    with running_server(ctc_model, ServerOptions()) as (url, _):
        client = _client(url)
        verbose = client.audio.transcriptions.create(file=binhai, model="m", response_format="verbose_json",
                                                     timestamp_granularities=["word"],
                                                     extra_body={"max_new_tokens": 16})
        assert verbose.text == expected.text
        assert [(w.word, w.start, w.end) for w in verbose.words] == [(t, round(a, 3), round(b, 3)) for t, a, b in words]
        assert not verbose.segments  # only words were asked for, as OpenAI answers
        both = client.audio.transcriptions.create(file=binhai, model="m", response_format="verbose_json",
                                                  timestamp_granularities=["word", "segment"],
                                                  extra_body={"max_new_tokens": 16})
        assert len(both.segments) == 1 and len(both.words) == len(words)
        with pytest.raises(openai.BadRequestError) as error:
            client.audio.transcriptions.create(file=binhai, model="m", timestamp_granularities=["word"])
        assert error.value.body["param"] == "timestamp_granularities"


def test_word_granularity_on_a_checkpoint_without_ctc_is_a_clear_400(model, binhai):
    with running_server(model, ServerOptions()) as (url, _):
        with pytest.raises(openai.BadRequestError) as error:
            _client(url).audio.transcriptions.create(file=binhai, model="m", response_format="verbose_json",
                                                     timestamp_granularities=["word"])
    assert "CTC branch" in error.value.body["message"]


def test_live_sessions_and_the_realtime_completed_event_carry_words(ctc_model, binhai):
    """With ``word_timestamps``, a live session's finals and the realtime ``completed`` events carry the
    words that offline transcription with VAD gives (times from the start of the stream)."""
    import base64
    import json

    import numpy as np
    import soundfile

    from funasr_nano.audio.vad import VadOptions
    from funasr_nano.pipeline.streaming import StreamingOptions
    from funasr_nano.server.formats import words_json

    websockets_sync = pytest.importorskip("websockets.sync.client")
    speech, _ = soundfile.read(binhai, dtype="float32")
    silence = np.zeros(16000, np.float32)
    pcm = (np.clip(np.concatenate([silence[:4000], speech, silence, speech[::-1], silence[:8000]]), -1, 1)
           * 32767).astype("<i2")
    audio = pcm.astype(np.float32) / 32768  # what the server decodes
    vad = VadOptions(max_merge_gap=0.5)
    expected = ctc_model.transcribe(audio, vad=True, vad_options=vad, word_timestamps=True, silence_gate=False,
                                    max_new_tokens=12)
    assert len(expected.segments) >= 2 and all(s.words for s in expected.segments)
    session = ctc_model.stream(word_timestamps=True, max_new_tokens=12, streaming_options=StreamingOptions(vad_options=vad))
    finals = [e for begin in range(0, audio.size, 1600) for e in session.feed(audio[begin:begin + 1600]) if e.final]
    finals += session.finish()
    assert [e.words for e in finals] == [s.words for s in expected.segments]
    assert [s.avg_logprob for s in session.segments] == pytest.approx([s.avg_logprob for s in expected.segments])
    with running_server(ctc_model, ServerOptions()) as (url, _):
        with websockets_sync.connect(url.replace("http://", "ws://") + "/v1/realtime") as ws:
            json.loads(ws.recv(timeout=30))  # session.created
            ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 16000},
                "transcription": {"word_timestamps": True, "max_new_tokens": 12},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}}}))
            assert json.loads(ws.recv(timeout=30))["type"] == "session.updated"
            data = pcm.tobytes()
            for begin in range(0, len(data), 3200):
                ws.send(json.dumps({"type": "input_audio_buffer.append",
                                    "audio": base64.b64encode(data[begin:begin + 3200]).decode()}))
            ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            completed = []
            while len(completed) < len(expected.segments):
                event = json.loads(ws.recv(timeout=60))
                if event["type"] == "conversation.item.input_audio_transcription.completed":
                    completed.append(event)
    assert [e["transcript"] for e in completed] == [s.text for s in expected.segments]
    assert [e["words"] for e in completed] == [words_json([s]) for s in expected.segments]


def test_realtime_word_timestamps_on_a_checkpoint_without_ctc_is_an_error_event(model):
    import json

    websockets_sync = pytest.importorskip("websockets.sync.client")
    with running_server(model, ServerOptions()) as (url, _):
        with websockets_sync.connect(url.replace("http://", "ws://") + "/v1/realtime") as ws:
            json.loads(ws.recv(timeout=30))  # session.created
            ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
                "transcription": {"word_timestamps": True}}}}}))
            event = json.loads(ws.recv(timeout=30))
    assert event["type"] == "error" and "CTC branch" in event["error"]["message"]
