"""Typed results. JSON comes from :func:`dataclasses.asdict`."""

from __future__ import annotations

import dataclasses
import unicodedata
from typing import Iterable


@dataclasses.dataclass(frozen=True)
class Segment:
    """A stretch of audio and its text.

    Attributes:
        start: start time in seconds from the beginning of the input.
        end: end time in seconds.
        text: the decoded text (post-processed as FunASR does).
        tokens: generated LLM token ids, end-of-turn token excluded.
    """

    start: float
    end: float
    text: str
    tokens: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Transcription:
    """The result of :meth:`funasr_nano.FunASRNano.transcribe`.

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
