"""Output formats: txt, json, srt, vtt, tsv (as openai-whisper's ``utils.get_writer``).

Every writer takes a :class:`~funasr_nano.results.Transcription` and a text file object. Subtitle
timestamps are made well formed: clipped at 0, each cue's end after its start, and cues in time
order without overlap (segments from :mod:`funasr_nano.vad` already are).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, TextIO

from .results import Transcription

FORMATS = ("txt", "json", "srt", "vtt", "tsv")
MIN_CUE = 0.001  # seconds; a cue must end after it starts


def format_timestamp(seconds: float, *, decimal_marker: str = ".", always_include_hours: bool = True) -> str:
    """``seconds`` -> ``HH:MM:SS.mmm`` (``,`` for SubRip). Rounded to the millisecond; negative -> 0."""
    milliseconds = max(0, round(seconds * 1000))
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    secs, milliseconds = divmod(milliseconds, 1000)
    head = f"{hours:02d}:" if always_include_hours or hours else ""
    return f"{head}{minutes:02d}:{secs:02d}{decimal_marker}{milliseconds:03d}"


def subtitle_cues(result: Transcription) -> list[tuple[float, float, str]]:
    """``(start, end, text)`` per non-empty segment, in time order, times in seconds, monotonic: each
    cue starts at or after the previous cue's end and ends at least 1 ms after it starts."""
    cues = []
    previous_end = 0.0
    for segment in sorted(result.segments, key=lambda s: (s.start, s.end)):
        text = " ".join(segment.text.split())  # one line: a blank line would end the cue
        if not text:
            continue
        start = max(segment.start, previous_end, 0.0)
        end = max(segment.end, start + MIN_CUE)
        cues.append((start, end, text))
        previous_end = end
    return cues


def write_txt(result: Transcription, file: TextIO) -> None:
    """The transcript, one line."""
    print(result.text, file=file)


def write_json(result: Transcription, file: TextIO) -> None:
    """``dataclasses.asdict(result)``: text, tokens, language, duration, segments."""
    json.dump(dataclasses.asdict(result), file, ensure_ascii=False)
    print(file=file)


def write_srt(result: Transcription, file: TextIO) -> None:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``."""
    for number, (start, end, text) in enumerate(subtitle_cues(result), start=1):
        print(f"{number}\n{format_timestamp(start, decimal_marker=',')} --> "
              f"{format_timestamp(end, decimal_marker=',')}\n{text}\n", file=file)


def write_vtt(result: Transcription, file: TextIO) -> None:
    """WebVTT: ``WEBVTT`` header, cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm``."""
    print("WEBVTT\n", file=file)
    for start, end, text in subtitle_cues(result):
        print(f"{format_timestamp(start)} --> {format_timestamp(end)}\n{text}\n", file=file)


def write_tsv(result: Transcription, file: TextIO) -> None:
    """Tab-separated ``start<TAB>end<TAB>text`` with integer milliseconds (as openai-whisper)."""
    print("start\tend\ttext", file=file)
    for segment in result.segments:
        text = " ".join(segment.text.split())
        print(f"{round(1000 * segment.start)}\t{round(1000 * segment.end)}\t{text}", file=file)


WRITERS: dict[str, Callable[[Transcription, TextIO], None]] = {
    "txt": write_txt, "json": write_json, "srt": write_srt, "vtt": write_vtt, "tsv": write_tsv,
}


def get_writer(output_format: str) -> Callable[[Transcription, TextIO], None]:
    """The writer of ``output_format`` (one of :data:`FORMATS`).

    Raises:
        ValueError: an unknown format (the message lists the known ones).
    """
    try:
        return WRITERS[output_format]
    except KeyError:
        raise ValueError(f"unknown output format {output_format!r}; use one of {', '.join(FORMATS)}") from None


def write_result(result: Transcription, audio_path: str | os.PathLike, output_dir: str | os.PathLike,
                 output_format: str) -> str:
    """Write ``result`` to ``output_dir/<audio file stem>.<format>`` (UTF-8); return that path."""
    writer = get_writer(output_format)
    stem = os.path.splitext(os.path.basename(os.fspath(audio_path)))[0]
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(os.fspath(output_dir), f"{stem}.{output_format}")
    with open(path, "w", encoding="utf-8") as file:
        writer(result, file)
    return path

