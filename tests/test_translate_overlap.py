"""Cascade translation with overlap (``TranslationOptions.overlap``): on llama.cpp (the demo model's f32 GGUF
and a tiny Qwen3 chat translator GGUF), sentence i is translated while the speech model decodes sentence
i + 1, the events and text equal the serial path's, and closing the event stream stops both passes."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from funasr_nano import DecodingOptions, TranslationOptions, load_model
from funasr_nano.audio.io import load_audio
from funasr_nano.cli.main import main
from funasr_nano.engines.base import Engine
from funasr_nano.export.gguf_folder import export_gguf
from funasr_nano.pipeline.speech_model import SpeechModel
from funasr_nano.pipeline.translate import SentenceTranslated, SourceSentence, TranslationFinished
from funasr_nano.pipeline.translators import load_translator
from funasr_nano.testing.tiny_chat import write_tiny_chat_llm

from .conftest import ROOT
from .training_data import one_thread  # noqa: F401 - autouse fixture

OPTIONS = TranslationOptions(mode="cascade", decoding=DecodingOptions(max_new_tokens=20))
CLIPS = sorted((ROOT / "tests" / "data" / "demo_heldout").glob("*.flac"))


def three_sentences() -> np.ndarray:
    """Three held-out clips, 2.5 s of silence after each (the VAD cuts three segments)."""
    silence = np.zeros(40000, dtype=np.float32)
    return np.concatenate([np.concatenate([load_audio(CLIPS[i]), silence]) for i in (3, 4, 5)])


class Recording(Engine):
    """The speech engine, recording when each generate call starts and ends and how many tokens it made;
    ``delay`` seconds after each token (so that a test can act while a call runs)."""

    name = "recording"

    def __init__(self, inner, delay: float = 0.0):
        super().__init__(inner.stop_token_ids)
        self.inner, self.delay, self.calls = inner, delay, []
        self.started = threading.Condition()

    hidden_size = property(lambda self: self.inner.hidden_size)
    max_positions = property(lambda self: self.inner.max_positions)

    def generate(self, inputs, options, *, on_token=None, cancel=None):
        call = {"start": time.perf_counter(), "tokens": 0, "end": None}
        with self.started:
            self.calls.append(call)
            self.started.notify_all()

        def watch(row, tokens):
            call["tokens"] = len(tokens)
            time.sleep(self.delay)
            return bool(on_token(row, tokens)) if on_token is not None else False

        try:
            return self.inner.generate(inputs, options, on_token=watch, cancel=cancel)
        finally:
            call["end"] = time.perf_counter()


class SlowTranslator:
    """The llama.cpp translator, ``delay`` seconds after each token, recording its calls (start, end,
    tokens); ``gate``: its first call waits for that event first (at most 20 s) and records whether it
    was set."""

    def __init__(self, inner, delay: float = 0.0, gate: threading.Event | None = None):
        self.inner, self.delay, self.gate, self.calls = inner, delay, gate, []
        self.translating = threading.Event()

    def translate(self, text, options, *, cancel=None):
        call = {"start": time.perf_counter(), "tokens": 0, "end": None, "gate": None}
        self.calls.append(call)
        if self.gate is not None and len(self.calls) == 1:
            call["gate"] = self.gate.wait(20)
        self.translating.set()

        def watch(row, tokens):
            call["tokens"] = len(tokens)
            time.sleep(self.delay)
            return False

        try:
            tokens = self.inner.tokens(text, options, on_token=watch, cancel=cancel)
            return self.inner.engine.detokenize(tokens).strip()
        finally:
            call["end"] = time.perf_counter()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """``(llama.cpp speech model, llama.cpp translator)``: the demo model's f32 GGUF, a tiny Qwen3 chat GGUF."""
    folder = tmp_path_factory.mktemp("overlap")
    source = write_tiny_chat_llm(folder / "llm", "qwen3", seed=2)
    assert main(["export", "gguf", source, str(folder / "translator"), "--type", "f32"]) == 0
    export_gguf(None, folder / "speech", "f32")
    speech = load_model(folder / "speech", n_threads=1)
    yield speech, load_translator(folder / "translator", n_threads=1)
    speech.close()


def comparable(events):
    out = []
    for event in events:
        if isinstance(event, SentenceTranslated):
            event = dataclasses.replace(event, latency_s=0.0)
        if isinstance(event, TranslationFinished):
            event = dataclasses.replace(event.translation, timings=None)
        out.append(event)
    return out


def test_overlap_gives_the_serial_events_and_text(pair):
    speech, translator = pair
    audio = three_sentences()
    serial = comparable(speech.translate_stream(audio, OPTIONS, translator=translator))
    overlapped = comparable(speech.translate_stream(audio, dataclasses.replace(OPTIONS, overlap=True),
                                                    translator=translator))
    sources = [e for e in serial if isinstance(e, SourceSentence)]
    assert len(sources) >= 3 and all(e.sentence.text for e in serial if isinstance(e, SentenceTranslated))
    assert overlapped == serial
    assert speech.translate(audio, OPTIONS, overlap=True, translator=translator).text == serial[-1].text


def test_sentence_i_is_translated_while_the_speech_model_decodes_sentence_i_plus_1(pair):
    """The first translation waits until the speech model has begun decoding the second segment: only
    an overlapping pipeline lets that happen (serially it would wait its 20 s out)."""
    speech, translator = pair
    engine = Recording(speech.engine)
    model = SpeechModel(speech.family, engine, speech.adapters)
    second_call = threading.Event()
    threading.Thread(target=lambda: _wait_calls(engine, 2) and second_call.set(), daemon=True).start()
    slow = SlowTranslator(translator, gate=second_call)
    began = time.perf_counter()
    events = list(model.translate_stream(three_sentences(), dataclasses.replace(OPTIONS, overlap=True),
                                         translator=slow))
    assert slow.calls[0]["gate"] is True, "sentence 1 was not decoded while sentence 0 was being translated"
    assert time.perf_counter() - began < 15
    assert engine.calls[1]["start"] < slow.calls[0]["end"]
    first = next(e for e in events if isinstance(e, SentenceTranslated))
    # emitted as soon as translated: before the speech pass of the last segment ended
    assert first.latency_s < engine.calls[-1]["end"] - began


def _wait_calls(engine: Recording, n: int) -> bool:
    with engine.started:
        return engine.started.wait_for(lambda: len(engine.calls) >= n, timeout=30)


def test_closing_the_stream_stops_both_passes(pair):
    speech, translator = pair
    engine = Recording(speech.engine, delay=0.15)
    model = SpeechModel(speech.family, engine, speech.adapters)
    slow = SlowTranslator(translator, delay=0.15)
    options = dataclasses.replace(OPTIONS, overlap=True)
    audio = three_sentences()
    events = model.translate_stream(audio, options, translator=slow)
    source = next(event for event in events if isinstance(event, SourceSentence))
    assert slow.translating.wait(10) and _wait_calls(engine, 2)
    time.sleep(0.4)  # both passes are generating now
    closed = time.perf_counter()
    events.close()
    took = time.perf_counter() - closed
    assert took < 1.5, f"closing took {took:.2f} s"
    time.sleep(0.5)
    assert len(engine.calls) == 2, "the speech pass went on after the stream was closed"
    assert all(c["end"] is not None and c["end"] <= closed + took for c in engine.calls + slow.calls)
    full_translation = translator.tokens(source.text, options)
    assert len(slow.calls) == 1 and slow.calls[0]["tokens"] < len(full_translation), "the translation went on"
    second = speech.transcribe(audio, vad=True, max_new_tokens=options.decoding.max_new_tokens).segments[1]
    assert engine.calls[1]["tokens"] < len(second.tokens), "the speech pass of sentence 1 went on"
