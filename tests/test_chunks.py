"""The one pipeline path (funasr_nano/pipeline/chunks.py): the whole-or-VAD plan, the VAD chunks and the
seconds read, failure isolation in batches (the pipeline's, the server scheduler's), and the translation's
result as a transcription."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import soundfile

from funasr_nano import AudioTooLongError, AudioTooShortError, DecodingOptions, TranscribeOptions
from funasr_nano.engines.base import Engine
from funasr_nano.pipeline.chunks import Plan, VadChunks, batched, isolate_failures, plan
from funasr_nano.pipeline.translate import TranslatedSentence, Translation, TranslationTimings
from funasr_nano.results import Segment, Transcription, TranscriptionFailure

from .conftest import shared_file

OPTIONS = DecodingOptions(max_new_tokens=6, repetition_guard=False)


def test_plan_is_whole_up_to_max_duration_then_vad():
    short, long = np.zeros(5 * 16000, np.float32), np.zeros(40 * 16000, np.float32)
    assert plan(short, TranscribeOptions(max_duration=30)) == Plan(vad=False, duration=5.0)
    assert plan(long, TranscribeOptions(max_duration=30)) == Plan(vad=True, duration=40.0)
    assert plan(short, TranscribeOptions(vad=True)) == Plan(vad=True, duration=5.0)
    assert plan(long, TranscribeOptions(max_duration=40)) == Plan(vad=False, duration=40.0)  # up to, inclusive
    with pytest.raises(AudioTooLongError, match=r"audio is 40\.0 s long, more than max_duration \(30 s\)"):
        plan(long, TranscribeOptions(vad=False, max_duration=30))
    # the header's length, without decoding: an 8 kHz array of 4 s is 4 s
    assert plan(np.zeros(4 * 8000, np.float32), TranscribeOptions(), sample_rate=8000).duration == 4.0


def test_vad_chunks_count_the_seconds_read_and_can_refuse_too_short_audio():
    silence = VadChunks(np.zeros(12 * 16000, np.float32), TranscribeOptions().vad_options)
    assert silence.seconds == 0.0
    assert list(silence) == [] and silence.seconds == 12.0
    speech = VadChunks(shared_file("audio/zh_binhai.wav"), TranscribeOptions().vad_options)
    chunks = list(speech)
    assert len(chunks) == 1 and 0.0 <= chunks[0].start_time < chunks[0].end_time <= speech.seconds == 6.0
    tiny = io.BytesIO()  # a file of 0.05 s (files are read block by block, unchecked)
    soundfile.write(tiny, np.zeros(800, np.float32), 16000, format="WAV")
    assert list(VadChunks(tiny.getvalue(), TranscribeOptions().vad_options)) == []
    with pytest.raises(AudioTooShortError, match="0.050 s long"):
        list(VadChunks(tiny.getvalue(), TranscribeOptions().vad_options, check_length=True))


def test_batched_keeps_order_and_bounds_each_group():
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([], 2)) == []


def test_isolate_failures_retries_one_by_one_and_fails_only_the_culprit():
    calls = []

    def decode(group):
        calls.append(list(group))
        if "bad" in group:
            raise ValueError("bad input")
        return [item.upper() for item in group]

    def failure(item, error):
        return f"{item}: {error}"

    assert isolate_failures(decode, ["a", "b"], failure) == ["A", "B"]
    assert calls == [["a", "b"]]
    calls.clear()
    assert isolate_failures(decode, ["a", "bad", "c"], failure) == ["A", "bad: bad input", "C"]
    assert calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]


def test_transcribe_batch_isolates_a_failing_input(model, monkeypatch):
    files = [shared_file(f"audio/{name}.wav") for name in ("zh_binhai", "zh_welcome", "zh_mid")]
    expected = [model.transcribe(path, options=OPTIONS) for path in files]
    # an input that cannot be read fails alone, in its place
    results = list(model.transcribe_batch([files[0], "missing.wav", files[1]], options=OPTIONS, batch_size=3))
    assert results[0] == expected[0] and results[2] == expected[1]
    assert isinstance(results[1], TranscriptionFailure) and results[1].index == 1
    assert "no such file" in str(results[1].error)
    # a decoding error in a batch: its inputs are decoded one by one, and only the culprit fails
    decode_waveforms = model.decode_waveforms
    culprit = round(16000 * expected[1].duration)  # samples of the second input

    def failing(waveforms, *args, **kwargs):
        if any(w.size == culprit for w in waveforms):
            raise RuntimeError("engine failed")
        return decode_waveforms(waveforms, *args, **kwargs)

    monkeypatch.setattr(model, "decode_waveforms", failing)
    results = list(model.transcribe_batch(files, options=OPTIONS, batch_size=3))
    assert results[0] == expected[0] and results[2] == expected[2]
    assert isinstance(results[1], TranscriptionFailure) and str(results[1].error) == "engine failed"


def test_translation_as_a_transcription():
    sentences = (TranslatedSentence(0, "Hello.", "你好。", 0.0, 1.5), TranslatedSentence(1, "Bye.", None, 1.5, 2.0))
    translation = Translation(text="Hello. Bye.", source_text="你好。", segments=sentences, mode="cascade",
                              duration=2.5, timings=TranslationTimings(0.1, 0.2))
    assert translation.to_transcription("en") == Transcription(
        text="Hello. Bye.", tokens=(), language="en", duration=2.5,
        segments=(Segment(0.0, 1.5, "Hello.", ()), Segment(1.5, 2.0, "Bye.", ())))


class Failing(Engine):
    """Returns one token per row (the row's input); raises when a batch holds the input ``"bad"``."""

    name = "failing"
    hidden_size = 8
    max_positions = 64

    def __init__(self):
        super().__init__([0])
        self.batches = []

    def generate(self, inputs, options, *, on_token=None, cancel=None):
        self.batches.append(list(inputs))
        if "bad" in inputs:
            raise RuntimeError("engine failed")
        return [[ord(text[0])] for text in inputs]


def test_the_server_scheduler_isolates_a_failing_call():
    from funasr_nano.server.batching import BatchingEngine

    inner = Failing()
    engine = BatchingEngine(inner, batch_window=10.0, max_batch_size=3)  # closes at 3 rows
    results: dict = {}

    def call(text):
        try:
            results[text] = engine.generate([text], DecodingOptions())
        except RuntimeError as error:
            results[text] = str(error)

    threads = [threading.Thread(target=call, args=(text,)) for text in ("a", "bad", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    engine.shutdown()
    assert results == {"a": [[97]], "bad": "engine failed", "c": [[99]]}
    assert sorted(map(sorted, inner.batches)) == [["a"], ["a", "bad", "c"], ["bad"], ["c"]]
