"""Live transcription: PCM chunks in, partial and final results out.

Fun-ASR-Nano is not a streaming model; the official pseudo-streaming scheme (FunASR 1.4.16,
``funasr/models/fun_asr_nano/inference_vllm_streaming.py``: 720 ms chunks, cumulative re-encoding,
the previous text minus a rollback as ``prev_text``) re-decodes the growing current segment every
chunk, continuing from the previous result minus its last few tokens, which may still change. Here:

* audio is cut by the same online VAD as offline long-audio transcription
  (:class:`funasr_nano.audio.vad.VadSegmenter`); a segment is *final* when the VAD closes it (a pause longer
  than ``max_merge_gap``, the maximum segment length, or the end of the stream);
* every ``chunk_duration`` seconds of input, the open segment (from its padded start to now) is decoded
  with ``prefix_text`` = the last partial text minus its last ``rollback_tokens`` tokens, and a
  *partial* event is emitted;
* a final segment is decoded afresh, without prefix, exactly as
  :meth:`funasr_nano.SpeechModel.transcribe_segments` decodes it: fed chunk by chunk, a file gives the
  same final segments (boundaries, tokens, text; words with ``word_timestamps``) as offline transcription
  with ``vad=True``.

A session holds the state of one stream; the model it wraps is shared and may serve other sessions.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import numpy as np
import soxr

from ..audio.io import SAMPLE_RATE, check_sample_rate, to_mono
from ..audio.vad import SpeechChunk, VadOptions, VadSegmenter
from ..errors import InvalidOptionError
from ..options import TranscribeOptions
from ..results import Segment, Transcription, Word
from ..validation import check_integer, check_number
from .chunks import check_options, decode_chunks
from .transcribe import transcription

if TYPE_CHECKING:
    from .speech_model import SpeechModel

logger = logging.getLogger(__name__)

MIN_PARTIAL_DURATION = 0.1  # seconds; less audio gives too few LFR frames to decode


@dataclasses.dataclass(frozen=True)
class StreamingOptions:
    """Live transcription settings.

    Attributes:
        chunk_duration: seconds of new audio between two re-decodes of the open segment (the official
            scheme's 720 ms; smaller = fresher partials, more compute).
        rollback_tokens: tokens dropped from the end of the previous partial before it is used as the
            prefix of the next decode (the tail of a partial is the least certain part; the official
            vLLM streamer rolls back 8 characters, about 5 Qwen tokens of Chinese).
        vad_options: how the stream is cut into segments (a segment is final once the VAD closes it).
    """

    chunk_duration: float = 0.72
    rollback_tokens: int = 5
    vad_options: VadOptions = dataclasses.field(default_factory=VadOptions)

    def __post_init__(self):
        check_number("chunk_duration", self.chunk_duration, 0, low_open=True)
        check_integer("rollback_tokens", self.rollback_tokens, 0)


@dataclasses.dataclass(frozen=True)
class StreamingEvent:
    """A result of a live session.

    Attributes:
        final: ``False``: a partial result for the open segment (it will be replaced); ``True``: the
            segment is closed and this is its text for good.
        index: segment number in the stream, from 0 (partials and the final of one segment share it).
        start: segment start, seconds from the start of the stream.
        end: segment end (for a partial: the audio received so far), seconds.
        text: the text of the segment (a partial includes its prefix).
        tokens: generated token ids (a partial: those generated after the prefix).
        words: a final's words with their times, seconds from the start of the stream, when the session
            asked for ``word_timestamps`` (as offline transcription computes them); else ``None``.
    """

    final: bool
    index: int
    start: float
    end: float
    text: str
    tokens: tuple[int, ...]
    words: tuple[Word, ...] | None = None

    def to_segment(self) -> Segment:
        return Segment(start=self.start, end=self.end, text=self.text, tokens=self.tokens, words=self.words)


class StreamingSession:
    """One live stream. Create with :meth:`funasr_nano.SpeechModel.stream`.

    Example::

        session = model.stream(language="zh")
        for pcm in microphone_chunks():          # int16 or float32, 16 kHz mono
            for event in session.feed(pcm):
                print("FINAL" if event.final else "...", event.text)
        for event in session.finish():
            print("FINAL", event.text)
    """

    def __init__(self, model: "SpeechModel", options: TranscribeOptions | None = None, *,
                 streaming_options: StreamingOptions | None = None, sample_rate: int = SAMPLE_RATE,
                 task: str = "transcribe"):
        options = options or TranscribeOptions()
        self.model = model
        self.options = options.decoding
        self.streaming_options = streaming_options or StreamingOptions()
        self.language = options.language
        self._transcribe_options = dataclasses.replace(options, vad=True, vad_options=self.streaming_options.vad_options)
        self.prompt = check_options(model, self._transcribe_options)
        # finals are decoded as offline VAD segments, without the silence gate or a hotwords file; words for
        # the transcription task only
        self._final_options = dataclasses.replace(self._transcribe_options, silence_gate=False, hotwords_file=None,
                                                  word_timestamps=options.word_timestamps and task == "transcribe")
        # another audio task of the family (``translate``: live speech translation) answers its own
        # prompt instead; segments, partials and finals work the same way
        self.task = task
        if task != "transcribe":
            if not model.family.task_uses_audio(task):
                raise InvalidOptionError(f"task {task!r} takes text, not a live audio stream")
            self.prompt = model.family.task_prompt(task)
        self.sample_rate = check_sample_rate(sample_rate, "stream")
        self._resampler = (soxr.ResampleStream(self.sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="VHQ")
                           if self.sample_rate != SAMPLE_RATE else None)
        self._segmenter = VadSegmenter(self.streaming_options.vad_options)
        self._chunk = int(round(self.streaming_options.chunk_duration * SAMPLE_RATE))
        self._since_decode = 0
        self._index = 0
        self._partial_text = ""
        # the language the last partial's model output named (families that write it: Qwen3-ASR), which
        # the next partial's prompt forces so that its answer continues the prefix text in that language
        self._partial_language: str | None = None
        self._finals: list[Segment] = []
        self._finished = False

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The final segments so far."""
        return tuple(self._finals)

    def feed(self, pcm: np.ndarray) -> list[StreamingEvent]:
        """Add audio; return the events it produced (finals first, then at most one partial).

        Args:
            pcm: ``(samples,)`` mono or ``(samples, channels)`` audio at the session's sample rate;
                int16/int32 (scaled by the type's range) or float in [-1, 1]. Any length (a few ms to many
                seconds).

        Raises:
            AudioDecodeError: NaN/infinite or absurdly large samples, or an array of the wrong shape.
        """
        if self._finished:
            raise RuntimeError("feed() after finish()")
        samples = to_mono(np.asarray(pcm), "stream chunk")
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        events = self._finalize(self._segmenter.push(samples))
        self._since_decode += samples.size
        if self._since_decode >= self._chunk:
            self._since_decode %= self._chunk
            partial = self._partial()
            if partial is not None:
                events.append(partial)
        return events

    def finish(self) -> list[StreamingEvent]:
        """End of stream: the final events of the open speech."""
        if self._finished:
            return []
        if self._resampler is not None:
            self._segmenter.push(self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        self._finished = True
        return self._finalize(self._segmenter.finish())

    def transcription(self) -> Transcription:
        """The final segments so far as a :class:`Transcription` (text joined as offline)."""
        return transcription(self.model, self._transcribe_options, self._finals,
                             self._segmenter.samples_received / SAMPLE_RATE, vad=True)

    # -- internals ------------------------------------------------------------------------------------

    def _finalize(self, chunks: list[SpeechChunk]) -> list[StreamingEvent]:
        events = []
        for chunk in chunks:  # each alone, as it closes
            segment = decode_chunks(self.model, self._final_options, self.prompt, [chunk], task=self.task)[0]
            self._finals.append(segment)
            events.append(StreamingEvent(True, self._index, segment.start, segment.end, segment.text, segment.tokens,
                                         segment.words))
            self._index += 1
            self._partial_text = ""
            self._partial_language = None
        return events

    def _prefix(self) -> str:
        """The last partial minus its last ``rollback_tokens`` tokens (whole characters only)."""
        k = self.streaming_options.rollback_tokens
        if not self._partial_text:
            return ""
        ids = self.model.tokenizer.encode(self._partial_text, add_special_tokens=False)
        kept = ids[: len(ids) - k] if len(ids) > k else []
        return self.model.tokenizer.decode(kept, skip_special_tokens=True).rstrip("\ufffd")

    def _partial(self) -> StreamingEvent | None:
        open_speech = self._segmenter.open_speech()
        if open_speech is None or open_speech[1].size < MIN_PARTIAL_DURATION * SAMPLE_RATE:
            return None
        start, samples = open_speech
        prefix = self._prefix()
        prompt, language = self.prompt, self.language
        if prefix and language is None and self._partial_language and self.task == "transcribe":
            # the prefix is text without the family's language header (``language X<asr_text>``): force
            # the language the previous partial named, so the prompt ends where the prefix text begins
            language = self._partial_language
            prompt = check_options(self.model, dataclasses.replace(self._transcribe_options, language=language))
        tokens = self.model.decode_waveforms([samples], prompt, self.options, prefix_texts=[prefix],
                                             task=self.task)[0]
        named, continuation = self.model.parse_transcription(tokens, language)
        text = (prefix + continuation).strip()
        self._partial_text = text
        self._partial_language = named if self.language is None else None
        return StreamingEvent(False, self._index, start / SAMPLE_RATE, (start + samples.size) / SAMPLE_RATE,
                              text, tuple(tokens))
