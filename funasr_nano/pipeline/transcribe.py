"""Transcription: one input (any length) -> segments, lazily; many inputs -> results, lazily and in
batches.

Audio up to ``max_duration`` seconds is decoded in one piece (exactly the official FunASR inference).
Longer audio is read block by block and cut at pauses by the online VAD (:mod:`funasr_nano.audio.vad`);
each segment is decoded on its own, ``batch_size`` segments together. Argument errors are raised when
the call is made, before any audio is decoded; the shape is faster-whisper's: ``(segments, info)``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from ..audio.io import SAMPLE_RATE, AudioInput, describe_source, iter_audio, load_audio, probe_duration
from ..audio.vad import SpeechChunk, VadSegmenter
from ..errors import AudioTooLongError, InvalidOptionError
from ..options import TranscribeOptions
from ..results import Segment, Transcription, TranscriptionFailure, TranscriptionInfo, join_texts
from . import timestamps
from .decoding import avg_logprob

if TYPE_CHECKING:
    from .speech_model import SpeechModel

logger = logging.getLogger(__name__)


def check_options(model: "SpeechModel", options: TranscribeOptions) -> str:
    """Check ``options`` against ``model`` and return the transcription instruction.

    Raises:
        UnsupportedLanguageError: a language the model does not know.
        ValueError: ``max_duration`` or the VAD's longest segment beyond what the encoder takes in one
            piece, or a prompt that cannot fit the LLM's context window.
    """
    limit = model.family.max_audio_seconds
    if options.max_duration > limit:
        raise InvalidOptionError(f"max_duration {options.max_duration:g} s is more than this model's encoder takes in one "
                         f"piece ({limit:.1f} s); lower it, and use VAD (vad=True) for longer audio")
    if options.vad is not False and options.vad_options.max_segment_duration > limit:
        raise InvalidOptionError(f"vad_options.max_segment_duration {options.vad_options.max_segment_duration:g} s is more "
                         f"than this model's encoder takes in one piece ({limit:.1f} s)")
    timestamps.check_timestamps(model, options)
    instruction = model.family.transcription_instruction(options.language, options.hotwords, options.itn)
    longest = max(options.max_duration, options.vad_options.max_segment_duration if options.vad is not False else 0)
    model.check_fits(instruction, longest, options.decoding.max_new_tokens)
    return instruction


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


def too_long(audio: AudioInput, duration: float, max_duration: float) -> AudioTooLongError:
    """The error for input longer than ``max_duration`` seconds with VAD turned off."""
    return AudioTooLongError(
        f"{describe_source(audio)}: audio is {duration:.1f} s long, more than max_duration ({max_duration:g} s) "
        f"that the model decodes in one piece; enable VAD (vad=True, or --vad on the command line) to cut it "
        f"at pauses, or raise max_duration"
    )


def _stream_duration(audio: AudioInput, sample_rate: int | None) -> float:
    """Seconds of audio whose header does not say, by decoding it block by block (memory: one block)."""
    return sum(block.size for block in iter_audio(audio, sample_rate=sample_rate)) / SAMPLE_RATE


def _plan(model: "SpeechModel", audio: AudioInput, options: TranscribeOptions,
          sample_rate: int | None) -> tuple[str, bool, float | None]:
    """``(instruction, use_vad, duration or None)``; raises argument errors and too-long input."""
    instruction = check_options(model, options)
    duration = probe_duration(audio, sample_rate=sample_rate)  # the header's, without decoding
    use_vad = options.vad
    if use_vad is None:
        if duration is None:  # the header does not say: count the samples (the decode is not kept)
            duration = _stream_duration(audio, sample_rate)
        use_vad = duration > options.max_duration
    if not use_vad and duration is not None and duration > options.max_duration:
        raise too_long(audio, duration, options.max_duration)
    return instruction, use_vad, duration


def _segments(model: "SpeechModel", audio: AudioInput, options: TranscribeOptions, sample_rate: int | None,
              instruction: str, use_vad: bool, read: dict) -> Iterator[Segment]:
    """Decode ``audio``; ``read["duration"]`` holds the seconds of audio read once it is done."""
    if not use_vad:
        waveform = load_audio(audio, sample_rate=sample_rate)
        read["duration"] = seconds = waveform.size / SAMPLE_RATE
        if seconds > options.max_duration:
            raise too_long(audio, seconds, options.max_duration)
        prepared = timestamps.prepare(model, options, waveform, 0.0, seconds, vad_segment=False)
        if not prepared.speech:
            return
        tokens = model.decode_waveforms([waveform], timestamps.instructions(model, options, instruction, [prepared]),
                                        options.decoding, embeddings=[prepared.audio_embeddings])[0]
        text = model.parse_transcription(tokens, options.language)[1]
        yield timestamps.finish(model, options, prepared, tokens, text, avg_logprob(tokens))
        return

    segmenter = VadSegmenter(options.vad_options)
    waiting: list[SpeechChunk] = []

    def decode(chunks: list[SpeechChunk]) -> Iterator[Segment]:
        prepared = [timestamps.prepare(model, options, c.samples, c.start_time, c.end_time, vad_segment=True)
                    for c in chunks]
        prepared = [p for p in prepared if p.speech]
        token_lists = model.decode_waveforms([p.waveform for p in prepared],
                                             timestamps.instructions(model, options, instruction, prepared),
                                             options.decoding, batch_size=options.batch_size,
                                             embeddings=[p.audio_embeddings for p in prepared]) if prepared else []
        for segment, tokens in zip(prepared, token_lists):
            logger.debug("segment %.2f-%.2f s: %d tokens", segment.start, segment.end, len(tokens))
            text = model.parse_transcription(tokens, options.language)[1].strip()
            yield timestamps.finish(model, options, segment, tokens, text, avg_logprob(tokens))

    for block in iter_audio(audio, sample_rate=sample_rate):
        waiting.extend(segmenter.push(block))
        if len(waiting) >= options.batch_size:
            batch, waiting = waiting[: options.batch_size], waiting[options.batch_size:]
            yield from decode(batch)
    waiting.extend(segmenter.finish())
    read["duration"] = segmenter.samples_received / SAMPLE_RATE
    for begin in range(0, len(waiting), options.batch_size):
        yield from decode(waiting[begin: begin + options.batch_size])


def transcribe_segments(model: "SpeechModel", audio: AudioInput, options: TranscribeOptions,
                        sample_rate: int | None = None) -> tuple[Iterator[Segment], TranscriptionInfo]:
    """See :meth:`funasr_nano.SpeechModel.transcribe_segments`."""
    instruction, use_vad, duration = _plan(model, audio, options, sample_rate)
    info = TranscriptionInfo(duration=duration, language=options.language, vad=use_vad, options=options)
    return _segments(model, audio, options, sample_rate, instruction, use_vad, {}), info


def transcribe(model: "SpeechModel", audio: AudioInput, options: TranscribeOptions,
               sample_rate: int | None = None) -> Transcription:
    """See :meth:`funasr_nano.SpeechModel.transcribe`."""
    instruction, use_vad, _ = _plan(model, audio, options, sample_rate)
    read: dict = {}
    segments = list(_segments(model, audio, options, sample_rate, instruction, use_vad, read))
    tokens = tuple(token for segment in segments for token in segment.tokens)
    text = segments[0].text if not use_vad and segments else join_texts(s.text for s in segments)
    language = transcript_language(model, [s.tokens for s in segments], options.language)
    return Transcription(text=text, tokens=tokens, language=language, duration=read["duration"],
                         segments=tuple(segments))


def transcribe_batch(model: "SpeechModel", audios: Sequence[AudioInput], options: TranscribeOptions,
                     sample_rate: int | None = None) -> Iterator[Transcription | TranscriptionFailure]:
    """See :meth:`funasr_nano.SpeechModel.transcribe_batch`."""
    instruction = check_options(model, options)

    def decode(group: list[tuple[int, AudioInput, np.ndarray]]) -> list[Transcription | TranscriptionFailure]:
        """Results of a group decoded together; when the batch fails, one by one to isolate the culprit."""
        try:
            prepared = [timestamps.prepare(model, options, w, 0.0, w.size / SAMPLE_RATE, vad_segment=False)
                        for _, _, w in group]
            spoken = [p for p in prepared if p.speech]
            decoded = iter(model.decode_waveforms([p.waveform for p in spoken],
                                                  timestamps.instructions(model, options, instruction, spoken),
                                                  options.decoding, batch_size=options.batch_size,
                                                  embeddings=[p.audio_embeddings for p in spoken]) if spoken else [])
            token_lists = [next(decoded) if p.speech else None for p in prepared]
        except Exception as error:
            if len(group) == 1:
                return [TranscriptionFailure(index=group[0][0], source=describe_source(group[0][1]), error=error)]
            logger.info("a batch failed (%s); decoding its inputs one by one", error)
            return [result for row in group for result in decode([row])]
        results: list[Transcription | TranscriptionFailure] = []
        for (_, _, waveform), segment, tokens in zip(group, prepared, token_lists):
            seconds = waveform.size / SAMPLE_RATE
            if tokens is None:  # the silence gate dropped it
                results.append(Transcription(text="", tokens=(), language=options.language, duration=seconds))
                continue
            language, text = model.parse_transcription(tokens, options.language)
            results.append(Transcription(text=text, tokens=tuple(tokens), language=language, duration=seconds,
                                         segments=(timestamps.finish(model, options, segment, tokens, text,
                                                                         avg_logprob(tokens)),)))
        return results

    def run() -> Iterator[Transcription | TranscriptionFailure]:
        group: list[tuple[int, AudioInput, np.ndarray]] = []
        for index, audio in enumerate(audios):
            try:
                duration = probe_duration(audio, sample_rate=sample_rate) if options.vad is None else None
                if options.vad is False or (options.vad is None and duration is not None
                                            and duration <= options.max_duration):
                    waveform = load_audio(audio, sample_rate=sample_rate)
                    if waveform.size / SAMPLE_RATE > options.max_duration:
                        raise too_long(audio, waveform.size / SAMPLE_RATE, options.max_duration)
                    group.append((index, audio, waveform))
                    if len(group) >= options.batch_size:
                        yield from decode(group)
                        group = []
                    continue
                result: Transcription | TranscriptionFailure = transcribe(model, audio, options, sample_rate)
            except Exception as error:  # any failure stays with its input; the others go on
                result = TranscriptionFailure(index=index, source=describe_source(audio), error=error)
            yield from decode(group) if group else ()
            group = []
            yield result
        if group:
            yield from decode(group)

    return run()
