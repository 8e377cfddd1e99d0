"""Response bodies of ``/v1/audio/transcriptions`` and ``/v1/audio/translations`` in OpenAI's
``response_format``\\ s, and the server-sent events of a streamed transcription.

* ``json``: ``{"text", "usage": {"type": "duration", "seconds"}}``;
* ``text``: the text and a newline (``text/plain``);
* ``srt`` / ``vtt``: subtitles, one cue per segment (:mod:`funasr_nano.writers`: well-formed timestamps);
* ``verbose_json``: ``{"task", "language", "duration", "text", "segments": [{"id", "seek", "start",
  "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob"}],
  "words": [{"word", "start", "end"}], "usage"}`` (OpenAI's ``TranscriptionVerbose``; ``segments``
  unless only ``word`` granularity is asked for, ``words`` when it is). ``compression_ratio`` is
  computed as Whisper does (UTF-8 bytes over zlib-compressed bytes); ``avg_logprob`` and
  ``no_speech_prob`` are the segment's (``null`` when the engine or the checkpoint does not give them,
  see docs/timestamps.md); words are stripped of their leading space, as OpenAI writes them;
* stream: ``transcript.text.delta`` events (``{"type", "delta"}``) then ``transcript.text.done``
  (``{"type", "text"}``), each a ``data: <json>`` line and a blank line.
"""

from __future__ import annotations

import io
import json
import zlib
from typing import Sequence

from ..results import Segment, Transcription
from ..writers import write_srt, write_vtt

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("segment", "word")  # OpenAI's timestamp_granularities[]
STREAM_FORMATS = ("json", "text")  # a stream's events carry plain text
MEDIA_TYPES = {"json": "application/json", "verbose_json": "application/json", "text": "text/plain; charset=utf-8",
               "srt": "application/x-subrip; charset=utf-8", "vtt": "text/vtt; charset=utf-8"}


def compression_ratio(text: str) -> float:
    """UTF-8 bytes over zlib-compressed bytes (Whisper's ``compression_ratio``; > 2.4 suggests a loop)."""
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), 4) if data else 0.0


def usage(duration: float) -> dict:
    return {"type": "duration", "seconds": round(duration, 3)}


def render(result: Transcription, response_format: str, *, task: str, temperature: float,
           granularities: Sequence[str] = ()) -> tuple[str, str]:
    """``(body, media type)`` of ``result`` in ``response_format`` (one of :data:`RESPONSE_FORMATS`);
    ``granularities``: the request's ``timestamp_granularities[]`` (``verbose_json``)."""
    if response_format == "json":
        return json.dumps({"text": result.text, "usage": usage(result.duration)}, ensure_ascii=False), MEDIA_TYPES["json"]
    if response_format == "text":
        return result.text + "\n", MEDIA_TYPES["text"]
    if response_format in ("srt", "vtt"):
        buffer = io.StringIO()
        (write_srt if response_format == "srt" else write_vtt)(result, buffer)
        return buffer.getvalue(), MEDIA_TYPES[response_format]
    if response_format == "verbose_json":
        body = {
            "task": task,
            "language": result.language,
            "duration": round(result.duration, 3),
            "text": result.text,
        }
        if "segment" in granularities or "word" not in granularities:
            body["segments"] = segments_json(result.segments, temperature)
        if "word" in granularities:
            body["words"] = words_json(result.segments)
        body["usage"] = usage(result.duration)
        return json.dumps(body, ensure_ascii=False), MEDIA_TYPES["json"]
    raise ValueError(f"unknown response_format {response_format!r}")


def segments_json(segments: Sequence[Segment], temperature: float) -> list[dict]:
    return [{
        "id": index,
        "seek": int(round(segment.start * 100)),  # Whisper's unit: 10 ms frames
        "start": round(segment.start, 3),
        "end": round(segment.end, 3),
        "text": segment.text,
        "tokens": list(segment.tokens),
        "temperature": temperature,
        "avg_logprob": None if segment.avg_logprob is None else round(segment.avg_logprob, 4),
        "compression_ratio": compression_ratio(segment.text),
        "no_speech_prob": None if segment.no_speech_prob is None else round(segment.no_speech_prob, 4),
    } for index, segment in enumerate(segments)]


def words_json(segments: Sequence[Segment], offset: float = 0.0) -> list[dict]:
    """OpenAI's ``words``: ``{"word", "start", "end"}`` of every segment's words, in order (times plus
    ``offset`` seconds)."""
    return [{"word": word.word.strip(), "start": round(offset + word.start, 3), "end": round(offset + word.end, 3)}
            for segment in segments for word in (segment.words or ()) if word.word.strip()]


def sse(event: dict) -> str:
    """One server-sent event: ``data: <json>`` and a blank line."""
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


def delta_event(delta: str) -> dict:
    return {"type": "transcript.text.delta", "delta": delta}


def done_event(text: str) -> dict:
    return {"type": "transcript.text.done", "text": text}
