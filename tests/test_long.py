"""Long audio: VAD segmentation on real recordings, lazy segments, batching, streaming reads."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import soundfile

from funasr_nano import AudioTooLongError, DecodingOptions
from funasr_nano.audio.io import iter_audio, load_audio, probe_duration
from funasr_nano.results import join_texts
from funasr_nano.audio.vad import VadOptions, VadSegmenter, speech_chunks

from .conftest import shared_file

RECORDINGS = ("zh_binhai", "zh_welcome", "zh_mid", "zh_long")
SILENCE = 3.0  # seconds of digital silence between recordings
OPTIONS = DecodingOptions(max_new_tokens=10, repetition_guard=False)


class LongInput:
    """The four real recordings, one after another, with SILENCE seconds between them."""

    def __init__(self):
        parts, self.spans, position = [], [], 0
        for index, name in enumerate(RECORDINGS):
            samples, rate = soundfile.read(shared_file(f"audio/{name}.wav"), dtype="float32")
            assert rate == 16000
            if index:
                parts.append(np.zeros(int(SILENCE * 16000), dtype=np.float32))
                position += parts[-1].size
            self.spans.append((position / 16000, (position + samples.size) / 16000))
            parts.append(samples)
            position += samples.size
        self.samples = np.concatenate(parts)
        self.duration = self.samples.size / 16000


@pytest.fixture(scope="module")
def long_input() -> LongInput:
    return LongInput()


@pytest.fixture(scope="module")
def long_wav(long_input, tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "long.wav"
    soundfile.write(path, long_input.samples, 16000, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def offline(model, long_wav):
    """Offline transcription of the long file, one segment at a time."""
    return model.transcribe(long_wav, options=OPTIONS)


def test_long_input_is_cut_at_the_silences(offline, long_input):
    assert long_input.duration > 30  # long enough for VAD to turn on by itself
    segments = offline.segments
    assert len(segments) == len(RECORDINGS)
    for index, (segment, (rec_start, rec_end)) in enumerate(zip(segments, long_input.spans)):
        # a segment never reaches into the neighbouring recordings: boundaries fall in the silences
        if index:
            assert segment.start >= long_input.spans[index - 1][1], (index, segment.start)
        if index + 1 < len(segments):
            assert segment.end <= long_input.spans[index + 1][0], (index, segment.end)
        # and covers most of its own recording (the recordings have short silent margins)
        overlap = min(segment.end, rec_end) - max(segment.start, rec_start)
        assert overlap >= 0.6 * (rec_end - rec_start), (index, segment, rec_start, rec_end)
    # timestamps: monotonic, inside the audio
    assert 0 <= segments[0].start
    for a, b in zip(segments, segments[1:]):
        assert a.start < a.end <= b.start < b.end
    assert segments[-1].end <= long_input.duration + 1e-9
    assert offline.duration == pytest.approx(long_input.duration)
    # text and tokens are the segments'
    assert all(len(s.tokens) > 5 for s in segments)
    assert offline.text == join_texts(s.text for s in segments)
    assert offline.tokens == tuple(t for s in segments for t in s.tokens)


def test_each_segment_decodes_as_its_own_clip(model, offline, long_input):
    """A segment's tokens are those of transcribing exactly its samples without VAD."""
    segment = offline.segments[2]
    clip = long_input.samples[round(segment.start * 16000) : round(segment.end * 16000)]
    assert model.transcribe(clip, options=OPTIONS, vad=False).tokens == segment.tokens


def test_transcribe_segments_is_lazy_and_matches(model, long_wav, offline):
    generator, info = model.transcribe_segments(long_wav, options=OPTIONS)
    assert info.vad is True and info.duration == pytest.approx(offline.duration, abs=0.01)
    assert inspect.isgenerator(generator)
    first = next(generator)
    assert first == offline.segments[0]
    assert (first, *generator) == offline.segments


def test_array_and_file_inputs_agree(model, long_input, offline):
    assert model.transcribe(long_input.samples, options=OPTIONS).segments == offline.segments


def test_short_clips_keep_the_single_segment_path(model, binhai):
    auto = model.transcribe(binhai, options=OPTIONS)
    forced_off = model.transcribe(binhai, options=OPTIONS, vad=False)
    assert auto == forced_off
    assert len(auto.segments) == 1 and auto.segments[0].start == 0.0 and auto.segments[0].end == 6.0
    # forced on: VAD segments (binhai has a 1.2 s pause, within max_merge_gap: one segment)
    forced_on = model.transcribe(binhai, options=OPTIONS, vad=True)
    assert len(forced_on.segments) == 1 and 0.5 < forced_on.segments[0].start < 1.0


def test_too_long_without_vad_raises(model, long_wav):
    with pytest.raises(AudioTooLongError, match="VAD"):
        model.transcribe(long_wav, options=OPTIONS, vad=False)
    # the limit is configurable
    result = model.transcribe(long_wav, options=DecodingOptions(max_new_tokens=3), vad=False, max_duration=40)
    assert len(result.segments) == 1


def test_max_segment_duration_cuts_long_speech(long_input):
    options = VadOptions(max_segment_duration=3.0)
    chunks = list(speech_chunks([long_input.samples], options))
    assert len(chunks) > len(RECORDINGS)
    for chunk in chunks:
        assert chunk.end - chunk.start <= 3.0 * 16000
        np.testing.assert_array_equal(chunk.samples, long_input.samples[chunk.start : chunk.end])
    for a, b in zip(chunks, chunks[1:]):
        assert a.end <= b.start


def test_segmentation_does_not_depend_on_block_sizes(long_input):
    whole = list(speech_chunks([long_input.samples]))
    rng = np.random.default_rng(0)
    cuts = np.cumsum(rng.integers(100, 20000, size=200))
    pieces = np.split(long_input.samples, cuts[cuts < long_input.samples.size])
    streamed = list(speech_chunks(pieces))
    assert [(c.start, c.end) for c in streamed] == [(c.start, c.end) for c in whole]
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(streamed, whole))


def test_segmenter_keeps_little_audio(long_input):
    """Memory is bounded by the open segment, not the input."""
    segmenter = VadSegmenter()
    largest = 0
    for begin in range(0, long_input.samples.size, 8000):
        segmenter.push(long_input.samples[begin : begin + 8000])
        largest = max(largest, segmenter._buffer.size)
    segmenter.finish()
    assert largest < 12 * 16000  # the longest recording (8 s) + max_merge_gap + padding


def test_vad_options_are_checked():
    with pytest.raises(ValueError, match="threshold"):
        VadOptions(threshold=1.5)
    with pytest.raises(ValueError, match="max_segment_duration"):
        VadOptions(max_segment_duration=0.5)


def test_iter_audio_reads_in_blocks(long_wav, long_input, tmp_path):
    blocks = list(iter_audio(long_wav, block_duration=5.0))
    assert len(blocks) == int(np.ceil(long_input.duration / 5.0))
    np.testing.assert_array_equal(np.concatenate(blocks), load_audio(long_wav))
    assert probe_duration(long_wav) == pytest.approx(long_input.duration)
    # another rate: resampled as a stream, close to the whole-file resampling
    path = tmp_path / "long44k.flac"
    import soxr

    soundfile.write(path, soxr.resample(long_input.samples, 16000, 44100), 44100)
    streamed = np.concatenate(list(iter_audio(path, block_duration=2.0)))
    whole = load_audio(path)
    assert abs(streamed.size - whole.size) <= 2
    n = min(streamed.size, whole.size)
    assert np.max(np.abs(streamed[:n] - whole[:n])) < 1e-3


def test_join_texts():
    assert join_texts(["我想问", " 我在滨海新区有房。 ", "", "Hello world.", "How are you?", "好的"]) == \
        "我想问我在滨海新区有房。Hello world. How are you?好的"
