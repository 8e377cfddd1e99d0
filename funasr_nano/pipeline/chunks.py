"""The one path from audio to segments: the plan (whole or VAD), the chunks, their decoding, and failure
isolation. Transcription (one input, lazily or not, and many in batches), live streaming's finals, translation
and the corpus job all go through these pieces.

* :func:`plan`: whether an input is decoded in one piece (up to ``max_duration`` seconds, exactly the official
  FunASR inference) or cut at pauses by the online VAD, and its duration; too-long input without VAD is refused
  here.
* :func:`load_whole` / :class:`VadChunks`: the input as one :class:`~funasr_nano.audio.vad.SpeechChunk`, or its
  VAD chunks read block by block (memory: one block plus the open segment).
* :func:`decode_chunks`: chunks -> :class:`~funasr_nano.results.Segment` (the CTC analysis and silence gate,
  the LLM, the text, the word timestamps: :mod:`.timestamps`).
* :func:`isolate_failures`: decode a group; when it fails, each input alone, so only the culprit fails.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence, TypeVar

from ..audio.io import SAMPLE_RATE, AudioInput, check_duration, describe_source, iter_audio, load_audio, probe_duration
from ..audio.vad import SpeechChunk, VadOptions, VadSegmenter
from ..errors import AudioTooLongError, InvalidOptionError
from ..options import TranscribeOptions
from ..results import Segment
from . import timestamps
from .decoding import avg_logprob

if TYPE_CHECKING:
    from .speech_model import SpeechModel

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


def check_options(model: "SpeechModel", options: TranscribeOptions) -> str:
    """Check ``options`` against ``model`` and return the transcription prompt.

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
    prompt = model.family.transcription_prompt(options.language, options.hotwords, options.itn)
    longest = max(options.max_duration, options.vad_options.max_segment_duration if options.vad is not False else 0)
    model.check_fits(prompt, longest, options.decoding.max_new_tokens)
    return prompt


def too_long(audio: AudioInput, duration: float, max_duration: float) -> AudioTooLongError:
    """The error for input longer than ``max_duration`` seconds with VAD turned off."""
    return AudioTooLongError(
        f"{describe_source(audio)}: audio is {duration:.1f} s long, more than max_duration ({max_duration:g} s) "
        f"that the model decodes in one piece; enable VAD (vad=True, or --vad on the command line) to cut it "
        f"at pauses, or raise max_duration"
    )


# ----------------------------------------------------------------------------------------------------
# the plan


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one input is decoded.

    Attributes:
        vad: ``True``: cut at pauses by the VAD (:class:`VadChunks`); ``False``: in one piece (:func:`load_whole`).
        duration: seconds, from the header (or counted, when ``vad=None`` had to decide without one); ``None``
            when the header does not say and no decision needed it.
    """

    vad: bool
    duration: float | None


def plan(audio: AudioInput, options: TranscribeOptions, sample_rate: int | None = None) -> Plan:
    """Whole or VAD for ``audio``: ``options.vad`` when set; with ``vad=None``, VAD when the audio is longer
    than ``max_duration``. Reads the header only, unless ``vad=None`` and the header does not give the length:
    then the audio is decoded once, block by block, to count its samples (the decode is not kept).

    Raises:
        AudioDecodeError: a missing file, a bad header. AudioTooLongError: longer than ``max_duration`` (by
        the header) with ``vad=False``. ValueError/TypeError: a bad ``sample_rate`` or input type.
    """
    duration = probe_duration(audio, sample_rate=sample_rate)  # the header's, without decoding
    use_vad = options.vad
    if use_vad is None:
        if duration is None:  # the header does not say: count the samples (memory: one block)
            duration = sum(block.size for block in iter_audio(audio, sample_rate=sample_rate)) / SAMPLE_RATE
        use_vad = duration > options.max_duration
    if not use_vad and duration is not None and duration > options.max_duration:
        raise too_long(audio, duration, options.max_duration)
    return Plan(vad=use_vad, duration=duration)


# ----------------------------------------------------------------------------------------------------
# chunks


def load_whole(audio: AudioInput, options: TranscribeOptions, sample_rate: int | None = None) -> SpeechChunk:
    """``audio`` decoded in one piece, as one chunk from sample 0.

    Raises:
        AudioDecodeError, AudioTooShortError: as :func:`~funasr_nano.audio.io.load_audio`.
        AudioTooLongError: more than ``max_duration`` seconds of samples (a header may not say, or lie).
    """
    waveform = load_audio(audio, sample_rate=sample_rate)
    if waveform.size / SAMPLE_RATE > options.max_duration:
        raise too_long(audio, waveform.size / SAMPLE_RATE, options.max_duration)
    return SpeechChunk(0, waveform.size, waveform)


class VadChunks:
    """The speech chunks of ``audio`` cut at pauses by the online VAD, read block by block
    (:func:`~funasr_nano.audio.io.iter_audio` -> :meth:`VadSegmenter.push` -> :meth:`VadSegmenter.finish`);
    iterate once. :attr:`seconds` holds the seconds of audio read so far (all of it once iteration ends).

    Args:
        check_length: refuse, once all audio is read, less than
            :data:`~funasr_nano.audio.io.MIN_DURATION` in all (before the last chunks are yielded), as
            :meth:`SpeechModel.transcribe` refuses it without VAD.

    Raises (while iterating):
        AudioDecodeError: unreadable audio. AudioTooShortError: with ``check_length``.
    """

    def __init__(self, audio: AudioInput, options: VadOptions, sample_rate: int | None = None, *,
                 check_length: bool = False):
        self.audio = audio
        self.options = options
        self.sample_rate = sample_rate
        self.check_length = check_length
        self.seconds = 0.0

    def __iter__(self) -> Iterator[SpeechChunk]:
        segmenter = VadSegmenter(self.options)
        for block in iter_audio(self.audio, sample_rate=self.sample_rate):
            chunks = segmenter.push(block)
            self.seconds = segmenter.samples_received / SAMPLE_RATE
            yield from chunks
        chunks = segmenter.finish()
        self.seconds = segmenter.samples_received / SAMPLE_RATE
        if self.check_length:
            check_duration(self.seconds, describe_source(self.audio))
        yield from chunks


def batched(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """``items`` in consecutive lists of ``size`` (the last one shorter), each yielded once full: memory holds
    one list (Python 3.12's ``itertools.batched``, which 3.11 lacks)."""
    group: list[Item] = []
    for item in items:
        group.append(item)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group


# ----------------------------------------------------------------------------------------------------
# decoding


def decode_chunks(model: "SpeechModel", options: TranscribeOptions, prompt: str, chunks: Sequence[SpeechChunk],
                  *, whole: bool = False, task: str = "transcribe") -> list[Segment | None]:
    """Decode ``chunks`` together (``options.batch_size`` rows per LLM call): the CTC analysis and the silence
    gate (:func:`.timestamps.prepare`), the LLM on the kept chunks, the text, the words
    (:func:`.timestamps.finish`).

    Args:
        prompt: the family's prompt text (:func:`check_options`, or a task's); per chunk it gains the
            ``hotwords_file`` entries its CTC read-out matched.
        whole: the chunks are whole inputs (the silence gate's ``vad_segment=False``; the text is kept as the
            model wrote it), else VAD segments (their text stripped).
        task: picks the LoRA adapter (:meth:`SpeechModel.adapter_for`).

    Returns:
        per chunk, in order, its :class:`Segment` (times in seconds from the start of the input), or ``None``
        when the silence gate dropped it.
    """
    prepared = [timestamps.prepare(model, options, c.samples, c.start_time, c.end_time, vad_segment=not whole)
                for c in chunks]
    spoken = [p for p in prepared if p.speech]
    decoded = iter(model.decode_waveforms([p.waveform for p in spoken],
                                          timestamps.prompts(model, options, prompt, spoken),
                                          options.decoding, batch_size=options.batch_size, task=task,
                                          embeddings=[p.audio_embeddings for p in spoken]) if spoken else [])
    segments: list[Segment | None] = []
    for segment in prepared:
        if not segment.speech:
            segments.append(None)
            continue
        tokens = next(decoded)
        logger.debug("segment %.2f-%.2f s: %d tokens", segment.start, segment.end, len(tokens))
        text = model.parse_transcription(tokens, options.language)[1]
        text = text if whole else text.strip()
        segments.append(timestamps.finish(model, options, segment, tokens, text, avg_logprob(tokens)))
    return segments


def isolate_failures(decode: Callable[[list[Item]], list[Result]], group: list[Item],
                     failure: Callable[[Item, Exception], Result]) -> list[Result]:
    """``decode(group)``, one result per item; when it raises (whatever the exception), each item decoded
    alone, so that only the culprit fails: an item that fails alone gets ``failure(item, error)``."""
    try:
        return decode(group)
    except Exception as error:
        if len(group) == 1:
            return [failure(group[0], error)]
        logger.info("a batch of %d inputs failed (%s); decoding them one by one", len(group), error)
        return [result for item in group for result in isolate_failures(decode, [item], failure)]
