"""Transcription: one input (any length) -> segments, lazily; many inputs -> results, lazily and in
batches.

Audio up to ``max_duration`` seconds is decoded in one piece (exactly the official FunASR inference).
Longer audio is read block by block and cut at pauses by the online VAD (:mod:`funasr_nano.audio.vad`);
each segment is decoded on its own, ``batch_size`` segments together. Argument errors are raised when
the call is made, before any audio is decoded; the shape is faster-whisper's: ``(segments, info)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence

from ..audio.io import AudioInput, describe_source
from ..audio.vad import SpeechChunk
from ..options import TranscribeOptions
from ..results import Segment, Transcription, TranscriptionFailure, TranscriptionInfo, join_texts
from .chunks import VadChunks, batched, check_options, decode_chunks, isolate_failures, load_whole, plan

if TYPE_CHECKING:
    from .speech_model import SpeechModel


def transcript_language(model: "SpeechModel", token_lists: Sequence[Sequence[int]], hint: str | None) -> str | None:
    """The language of a transcript made of pieces: each piece's language
    (:meth:`~funasr_nano.SpeechModel.parse_transcription`), consecutive repeats and empty ones dropped, joined
    by commas (``"Chinese,English"``, as qwen-asr merges its chunks); ``hint`` when there are no pieces.
    For a family that does not name languages this is the hint."""
    if not token_lists:
        return hint
    merged: list[str] = []
    for tokens in token_lists:
        language = model.parse_transcription(tokens, hint)[0]
        if language and (not merged or merged[-1] != language):
            merged.append(language)
    return ",".join(merged) or None


def transcription(model: "SpeechModel", options: TranscribeOptions, segments: Sequence[Segment], duration: float,
                  vad: bool) -> Transcription:
    """The :class:`Transcription` of an input's decoded ``segments``: the text is the segments' texts joined
    (:func:`~funasr_nano.results.join_texts`), without VAD the one segment's text unchanged; the language is
    :func:`transcript_language`'s; ``duration`` in seconds."""
    return Transcription(text=segments[0].text if not vad and segments else join_texts(s.text for s in segments),
                         tokens=tuple(token for segment in segments for token in segment.tokens),
                         language=transcript_language(model, [s.tokens for s in segments], options.language),
                         duration=duration, segments=tuple(segments))


def _segments(model: "SpeechModel", audio: AudioInput, options: TranscribeOptions, sample_rate: int | None,
              prompt: str, use_vad: bool, read: dict) -> Iterator[Segment]:
    """Decode ``audio``, ``batch_size`` chunks at a time; ``read["duration"]`` holds the seconds of audio read
    once it is done."""
    if not use_vad:
        chunk = load_whole(audio, options, sample_rate)
        read["duration"] = chunk.end_time
        yield from (s for s in decode_chunks(model, options, prompt, [chunk], whole=True) if s is not None)
        return
    chunks = VadChunks(audio, options.vad_options, sample_rate)
    for group in batched(chunks, options.batch_size):
        yield from (s for s in decode_chunks(model, options, prompt, group) if s is not None)
    read["duration"] = chunks.seconds


def transcribe_segments(model: "SpeechModel", audio: AudioInput, options: TranscribeOptions,
                        sample_rate: int | None = None) -> tuple[Iterator[Segment], TranscriptionInfo]:
    """See :meth:`funasr_nano.SpeechModel.transcribe_segments`."""
    prompt = check_options(model, options)
    planned = plan(audio, options, sample_rate)
    info = TranscriptionInfo(duration=planned.duration, language=options.language, vad=planned.vad, options=options)
    return _segments(model, audio, options, sample_rate, prompt, planned.vad, {}), info


def transcribe(model: "SpeechModel", audio: AudioInput, options: TranscribeOptions,
               sample_rate: int | None = None) -> Transcription:
    """See :meth:`funasr_nano.SpeechModel.transcribe`."""
    return _transcribe(model, audio, options, sample_rate, check_options(model, options),
                       plan(audio, options, sample_rate).vad)


def _transcribe(model: "SpeechModel", audio: AudioInput, options: TranscribeOptions, sample_rate: int | None,
                prompt: str, use_vad: bool) -> Transcription:
    read: dict = {}
    segments = list(_segments(model, audio, options, sample_rate, prompt, use_vad, read))
    return transcription(model, options, segments, read["duration"], use_vad)


def transcribe_batch(model: "SpeechModel", audios: Sequence[AudioInput], options: TranscribeOptions,
                     sample_rate: int | None = None) -> Iterator[Transcription | TranscriptionFailure]:
    """See :meth:`funasr_nano.SpeechModel.transcribe_batch`."""
    prompt = check_options(model, options)

    def decode(group: list[tuple[int, AudioInput, SpeechChunk]]) -> list[Transcription]:
        """Inputs decoded whole, together."""
        segments = decode_chunks(model, options, prompt, [chunk for _, _, chunk in group], whole=True)
        return [transcription(model, options, [segment] if segment is not None else [], chunk.end_time, False)
                for (_, _, chunk), segment in zip(group, segments)]

    def failure(row: tuple, error: Exception) -> TranscriptionFailure:
        return TranscriptionFailure(index=row[0], source=describe_source(row[1]), error=error)

    def run() -> Iterator[Transcription | TranscriptionFailure]:
        group: list[tuple[int, AudioInput, SpeechChunk]] = []
        for index, audio in enumerate(audios):
            try:
                use_vad = plan(audio, options, sample_rate).vad
                if not use_vad:  # decoded whole: in a group with others
                    group.append((index, audio, load_whole(audio, options, sample_rate)))
                    if len(group) >= options.batch_size:
                        yield from isolate_failures(decode, group, failure)
                        group = []
                    continue
                result: Transcription | TranscriptionFailure = _transcribe(model, audio, options, sample_rate,
                                                                         prompt, use_vad)
            except Exception as error:  # any failure stays with its input; the others go on
                result = failure((index, audio), error)
            yield from isolate_failures(decode, group, failure) if group else ()
            group = []
            yield result
        if group:
            yield from isolate_failures(decode, group, failure)

    return run()
