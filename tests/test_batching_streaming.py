"""Batched decoding equals one-by-one decoding; live streaming's finals equal offline transcription."""

from __future__ import annotations

import numpy as np
import pytest

from funasr_nano import DecodingOptions
from funasr_nano.pipeline.streaming import StreamingOptions
from funasr_nano.audio.vad import VadOptions

from .conftest import shared_file
from .test_long import OPTIONS, RECORDINGS, LongInput

# a sensitive repetition guard stops some rows early: rows of one batch finish at different steps
GUARDED = DecodingOptions(max_new_tokens=40, guard_min_tokens=8, guard_min_repeats=3)


@pytest.fixture(scope="module")
def long_input() -> LongInput:
    return LongInput()


@pytest.fixture(scope="module")
def two_recordings(long_input):
    """binhai, 3 s of silence, welcome, 1 s of silence: two segments, 15.5 s."""
    end = long_input.spans[1][1] + 1.0
    return long_input.samples[: int(end * 16000)]


@pytest.fixture(scope="module")
def recordings():
    return [shared_file(f"audio/{name}.wav") for name in RECORDINGS]


def test_batched_files_give_identical_tokens(model, recordings):
    one_by_one = [model.transcribe(path, options=GUARDED) for path in recordings]
    batched = list(model.transcribe_batch(recordings, options=GUARDED, batch_size=3))  # a full and a partial batch
    assert [r.tokens for r in batched] == [r.tokens for r in one_by_one]
    assert batched == one_by_one
    assert all(len(r.tokens) > 5 for r in batched)
    assert len({len(r.tokens) for r in batched}) > 1, "some row should stop before the others"


def test_batched_segments_give_identical_tokens(model, long_input):
    one_by_one = model.transcribe(long_input.samples, options=OPTIONS, batch_size=1)
    for batch_size in (2, 4):
        batched = model.transcribe(long_input.samples, options=OPTIONS, batch_size=batch_size)
        assert batched.segments == one_by_one.segments
    assert len(one_by_one.segments) == len(RECORDINGS)


def test_decode_waveforms_pads_on_the_left(model, long_input):
    """Rows of very different lengths (2 s and 8 s) in one batch."""
    from funasr_nano.models.fun_asr_nano.prompt import transcription_instruction

    short, long = long_input.samples[16000:48000], long_input.samples[-8 * 16000 :]
    instruction = transcription_instruction()
    alone = [model.decode_waveforms([w], instruction, OPTIONS)[0] for w in (short, long)]
    assert model.decode_waveforms([short, long], instruction, OPTIONS, batch_size=2) == alone
    assert model.decode_waveforms([long, short], instruction, OPTIONS, batch_size=2) == alone[::-1]


def _stream(model, samples, chunk_sizes, streaming_options=None):
    session = model.stream(options=OPTIONS, streaming_options=streaming_options)
    events, position = [], 0
    for size in chunk_sizes:
        events.extend(session.feed(samples[position : position + size]))
        position += size
    assert position >= samples.size
    events.extend(session.finish())
    return session, events


def test_streaming_final_equals_offline(model, two_recordings):
    chunk = int(0.72 * 16000)
    pcm = np.round(two_recordings * 32767).astype(np.int16)  # what a microphone sends
    session, events = _stream(model, pcm, [chunk] * (pcm.size // chunk + 1))
    offline = model.transcribe(pcm, options=OPTIONS, vad=True)
    finals = [e for e in events if e.final]
    assert len(finals) == 2
    assert [e.to_segment() for e in finals] == list(offline.segments)
    assert session.transcription().text == offline.text
    # partials: several per segment, in order, each before its segment's final
    partials = [e for e in events if not e.final]
    assert len(partials) >= 2 * len(finals)
    for final in finals:
        mine = [e for e in partials if e.index == final.index]
        assert mine, f"no partial for segment {final.index}"
        assert events.index(mine[-1]) < events.index(final)
        assert all(e.start == pytest.approx(final.start, abs=0.5) for e in mine)
        ends = [e.end for e in mine]
        assert ends == sorted(ends) and ends[-1] <= final.end + 2.5
    assert [e.index for e in events] == sorted(e.index for e in events)


def test_streaming_uses_the_previous_text_as_prefix(model, long_input):
    """Each partial after the first continues the previous one minus `rollback_tokens` tokens."""
    options = StreamingOptions(rollback_tokens=3)
    chunk = int(0.72 * 16000)
    samples = long_input.samples[: int(6.5 * 16000)]  # binhai and some silence: one open segment
    _, events = _stream(model, samples, [chunk] * (samples.size // chunk + 1), options)
    partials = [e for e in events if not e.final and e.index == 0]
    assert len(partials) >= 3
    for previous, current in zip(partials[1:], partials[2:]):
        ids = model.tokenizer.encode(previous.text, add_special_tokens=False)
        prefix = model.tokenizer.decode(ids[:-3]).rstrip("\ufffd")
        assert current.text.startswith(prefix.strip())
        assert current.text == (prefix + model.decode_text(current.tokens)).strip()


def test_streaming_irregular_chunks(model, long_input):
    """Finals do not depend on how the audio is chunked (float input, all four recordings)."""
    offline = model.transcribe(long_input.samples, options=OPTIONS)
    rng = np.random.default_rng(1)
    sizes = list(rng.integers(50, 30000, size=long_input.samples.size // 1000))
    _, events = _stream(model, long_input.samples, sizes, StreamingOptions(chunk_duration=3.0))
    assert len(offline.segments) == len(RECORDINGS)
    assert [e.to_segment() for e in events if e.final] == list(offline.segments)


def test_streaming_options_are_checked():
    with pytest.raises(ValueError, match="chunk_duration"):
        StreamingOptions(chunk_duration=0)
    assert StreamingOptions().vad_options == VadOptions()


def test_streaming_checks_its_chunks(model, two_recordings):
    """A chunk goes through the same checks as any other input: NaN refused, stereo averaged to mono."""
    from funasr_nano import AudioDecodeError

    session = model.stream(options=OPTIONS)
    with pytest.raises(AudioDecodeError, match="NaN"):
        session.feed(np.full(1600, np.nan, dtype=np.float32))
    stereo = np.stack([two_recordings[:32000], two_recordings[:32000]], axis=1)  # (N, 2)
    session.feed(stereo)
    session.finish()
    assert session.transcription().duration == pytest.approx(2.0)  # N samples, not 2N
    with pytest.raises(ValueError, match="sample_rate 0 Hz"):
        model.stream(sample_rate=0)
