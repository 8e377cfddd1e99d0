"""Typed results. JSON comes from :func:`dataclasses.asdict`."""

from __future__ import annotations

import dataclasses
import unicodedata
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from .options import TranscribeOptions


@dataclasses.dataclass(frozen=True)
class Word:
    """A word (a character for Chinese and Japanese) with its time, as faster-whisper's ``Word``.

    Attributes:
        start: start time in seconds from the beginning of the input.
        end: end time in seconds.
        word: the text, with its leading space if it has one (the words of a segment join to its text).
        probability: confidence in [0, 1]: for Fun-ASR-Nano the CTC posterior of its tokens on their
            aligned frames (mean over tokens of the highest posterior, FunASR's token score); for
            Qwen3-ASR, Qwen3-ForcedAligner's probability of the chosen start and end time bins (mean).
    """

    start: float
    end: float
    word: str
    probability: float


@dataclasses.dataclass(frozen=True)
class Segment:
    """A stretch of audio and its text.

    Attributes:
        start: start time in seconds from the beginning of the input.
        end: end time in seconds.
        text: the decoded text (post-processed as FunASR does).
        tokens: generated LLM token ids, end-of-turn token excluded.
        words: the words with their times (``word_timestamps=True``), else ``None``.
        avg_logprob: the mean log-probability of the generated tokens under the LLM (end of turn
            included, as whisper counts it), when the engine reports it; else ``None``. Not part of a
            segment's equality: the same tokens decoded alone or in a padded batch get log-probabilities
            that differ in the last float digits (~1e-8), while the transcript is the same.
        no_speech_prob: how likely the segment holds no speech (CTC blank posterior, or the VAD's
            speech probability; see docs/timestamps.md), when it was computed; else ``None``.
    """

    start: float
    end: float
    text: str
    tokens: tuple[int, ...]
    words: tuple[Word, ...] | None = None
    avg_logprob: float | None = dataclasses.field(default=None, compare=False)
    no_speech_prob: float | None = None


@dataclasses.dataclass(frozen=True)
class Transcription:
    """The result of :meth:`funasr_nano.SpeechModel.transcribe`.

    Attributes:
        text: the transcript (segments' texts joined).
        tokens: generated token ids of all segments, end-of-turn tokens excluded.
        language: the language hint given (as passed), or ``None``.
        duration: seconds of audio transcribed.
        segments: the decoded segments, in time order.
    """

    text: str
    tokens: tuple[int, ...]
    language: str | None
    duration: float
    segments: tuple[Segment, ...] = ()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TranscriptionInfo:
    """What is known about a transcription before its first segment is decoded
    (:meth:`funasr_nano.SpeechModel.transcribe_segments`).

    Attributes:
        duration: seconds of audio from the file's header (or counted, when the header does not say and
            VAD had to be decided); ``None`` when the header does not say and VAD was forced on.
        language: the language hint given, or ``None``.
        vad: whether the audio is cut at pauses by the VAD.
        options: the options in effect.
    """

    duration: float | None
    language: str | None
    vad: bool
    options: "TranscribeOptions"


@dataclasses.dataclass(frozen=True)
class TranscriptionFailure:
    """An input of :meth:`funasr_nano.SpeechModel.transcribe_batch` that could not be transcribed.

    Attributes:
        index: its position in the batch's inputs.
        source: a printable name of the input (see :func:`funasr_nano.audio.io.describe_source`).
        error: the exception (a :class:`~funasr_nano.errors.FunASRNanoError` for bad input; any other
            exception, e.g. an out-of-memory error, is an unexpected failure of that one input).
    """

    index: int
    source: str
    error: BaseException


def _is_cjk(char: str) -> bool:
    """Characters written without spaces between words: CJK ideographs, kana, hangul, full-width
    punctuation."""
    name = unicodedata.name(char, "")
    return unicodedata.east_asian_width(char) in ("W", "F") or name.startswith(("CJK", "HIRAGANA", "KATAKANA"))


def join_texts(texts: Iterable[str]) -> str:
    """Join segment texts into one transcript: stripped, empty ones skipped, a space between two
    segments unless the boundary touches a CJK character or full-width punctuation (Chinese and
    Japanese are written without spaces)."""
    out = ""
    for text in texts:
        text = text.strip()
        if not text:
            continue
        if out and not (_is_cjk(out[-1]) or _is_cjk(text[0])):
            out += " "
        out += text
    return out
