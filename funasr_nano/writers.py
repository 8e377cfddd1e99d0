"""Output formats: txt, json, srt, vtt, tsv (as openai-whisper's ``utils.get_writer``).

Every writer takes a :class:`~funasr_nano.results.Transcription` and a text file object. Subtitle
timestamps are made well formed: clipped at 0, each cue's end after its start, and cues in time
order without overlap (segments from :mod:`funasr_nano.audio.vad` already are).

Subtitles are one cue per segment, or, with :class:`~funasr_nano.options.SubtitleOptions` and segments
that have words (``word_timestamps``), cues cut at word times as openai-whisper's ``SubtitlesWriter``
cuts them (``whisper/utils.py``): lines of at most ``max_line_width`` characters broken before a word;
cues of one segment each, of at most ``max_words_per_line`` words, unless ``max_line_count`` is given
too, when words flow across segments into cues of at most that many lines and a pause of more than
:data:`LONG_PAUSE` seconds starts a new cue; ``highlight_words`` repeats a cue once per word with that
word underlined (``<u>``) over the word's time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import json
import os
import uuid
from typing import Callable, Sequence, TextIO

from .errors import InvalidOptionError
from .options import SubtitleOptions
from .results import Segment, Transcription, Word, join_texts

FORMATS = ("txt", "json", "srt", "vtt", "tsv")
SUBTITLE_FORMATS = ("srt", "vtt")
MIN_CUE = 0.001  # seconds; a cue must end after it starts
# seconds between two words that start a new cue when words flow across segments (whisper's 3.0)
LONG_PAUSE = 3.0


def format_timestamp(seconds: float, *, decimal_marker: str = ".", always_include_hours: bool = True) -> str:
    """``seconds`` -> ``HH:MM:SS.mmm`` (``,`` for SubRip). Rounded to the millisecond; negative -> 0."""
    milliseconds = max(0, round(seconds * 1000))
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    secs, milliseconds = divmod(milliseconds, 1000)
    head = f"{hours:02d}:" if always_include_hours or hours else ""
    return f"{head}{minutes:02d}:{secs:02d}{decimal_marker}{milliseconds:03d}"


def _well_formed(cues: Sequence[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Cues in the given order with each starting at or after the previous one's end (and at 0 or
    later) and ending at least :data:`MIN_CUE` after it starts."""
    fixed = []
    previous_end = 0.0
    for start, end, text in cues:
        start = max(start, previous_end, 0.0)
        end = max(end, start + MIN_CUE)
        fixed.append((start, end, text))
        previous_end = end
    return fixed


def subtitle_cues(result: Transcription, options: SubtitleOptions | None = None) -> list[tuple[float, float, str]]:
    """``(start, end, text)`` cues, in time order, times in seconds, monotonic: each cue starts at or
    after the previous cue's end and ends at least 1 ms after it starts. Without ``options`` (or with
    none set): one cue per non-empty segment, its text on one line; else cut at word times (module
    docstring).

    Raises:
        InvalidOptionError: ``options`` set and a segment with text has no words (transcribed without
            ``word_timestamps``).
    """
    segments = sorted(result.segments, key=lambda s: (s.start, s.end))
    if options is not None and options.active:
        return _well_formed(_word_cues(segments, options))
    cues = []
    for segment in segments:
        text = " ".join(segment.text.split())  # one line: a blank line would end the cue
        if text:
            cues.append((segment.start, segment.end, text))
    return _well_formed(cues)


def _word_cues(segments: Sequence[Segment], options: SubtitleOptions) -> list[tuple[float, float, str]]:
    """Cues cut at word times (module docstring)."""
    flowing = options.max_line_count is not None  # validated: max_line_width is given too
    width = options.max_line_width or float("inf")
    per_cue = options.max_words_per_line or float("inf")
    groups: list[list[tuple[Word, str]]] = []  # cues: (word, its text as written: leading space or newline)
    line_chars, lines, previous_end = 0, 1, None
    for segment in segments:
        if segment.words is None:
            if segment.text.strip():
                raise InvalidOptionError("subtitles cut at word times (max_line_width, max_line_count, "
                                         "max_words_per_line, highlight_words) need word timestamps: transcribe "
                                         "with word_timestamps=True (--word-timestamps)")
            continue
        words = [word for word in segment.words if word.word.strip()]
        for index, word in enumerate(words):
            text = word.word
            if index == 0 and groups and not text[:1].isspace():  # a space between segments, as join_texts
                last = groups[-1][-1][1][-1:]
                text = join_texts([last, text])[len(last):]
            pause = flowing and previous_end is not None and word.start - previous_end > LONG_PAUSE
            cue_break = not groups or pause or (not flowing and index % per_cue == 0)
            if not cue_break and line_chars + len(text) <= width:
                line_chars += len(text)  # the same line
            else:
                text = text.strip()
                if cue_break or (flowing and lines >= options.max_line_count):
                    groups.append([])
                    lines = 1
                else:
                    lines += 1
                    text = "\n" + text
                line_chars = len(text.strip())
            groups[-1].append((word, text))
            previous_end = word.end
    cues = []
    for group in groups:
        text = "".join(written for _, written in group).replace("-->", "->")
        if not options.highlight_words:
            cues.append((group[0][0].start, group[-1][0].end, text))
            continue
        at = group[0][0].start
        for index, (word, _) in enumerate(group):
            if word.start > at:  # between two words: the cue without a highlight
                cues.append((at, word.start, text))
            marked = "".join(_underlined(written) if i == index else written for i, (_, written) in enumerate(group))
            cues.append((word.start, word.end, marked.replace("-->", "->")))
            at = max(at, word.end)
    return cues


def _underlined(text: str) -> str:
    """``" word"`` -> ``" <u>word</u>"`` (leading space or newline kept outside)."""
    body = text.lstrip()
    return f"{text[: len(text) - len(body)]}<u>{body}</u>"


def write_txt(result: Transcription, file: TextIO) -> None:
    """The transcript, one line."""
    print(result.text, file=file)


def write_json(result: Transcription, file: TextIO) -> None:
    """``dataclasses.asdict(result)``: text, tokens, language, duration, segments."""
    json.dump(dataclasses.asdict(result), file, ensure_ascii=False)
    print(file=file)


def write_srt(result: Transcription, file: TextIO, options: SubtitleOptions | None = None) -> None:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` (cut as :func:`subtitle_cues` with
    ``options``)."""
    for number, (start, end, text) in enumerate(subtitle_cues(result, options), start=1):
        print(f"{number}\n{format_timestamp(start, decimal_marker=',')} --> "
              f"{format_timestamp(end, decimal_marker=',')}\n{text}\n", file=file)


def write_vtt(result: Transcription, file: TextIO, options: SubtitleOptions | None = None) -> None:
    """WebVTT: ``WEBVTT`` header, cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` (cut as :func:`subtitle_cues`
    with ``options``)."""
    print("WEBVTT\n", file=file)
    for start, end, text in subtitle_cues(result, options):
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


def get_writer(output_format: str, subtitles: SubtitleOptions | None = None) -> Callable[[Transcription, TextIO], None]:
    """The writer of ``output_format`` (one of :data:`FORMATS`); srt and vtt cut their cues by
    ``subtitles`` (the other formats have no cues and ignore it).

    Raises:
        ValueError: an unknown format (the message lists the known ones).
    """
    try:
        writer = WRITERS[output_format]
    except KeyError:
        raise ValueError(f"unknown output format {output_format!r}; use one of {', '.join(FORMATS)}") from None
    if subtitles is not None and output_format in SUBTITLE_FORMATS:
        return functools.partial(writer, options=subtitles)
    return writer


def _file_id(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status.st_dev, status.st_ino


def output_names(audio_paths: Sequence[str | os.PathLike], output_dir: str | os.PathLike,
                 formats: Sequence[str] = FORMATS) -> list[str]:
    """One output name (file name without the ``.<format>``) per input, unique within the run.

    The name is the input file's stem (``a/clip.wav`` -> ``clip``). When several inputs share a stem,
    the first keeps it and the later ones get ``clip-1``, ``clip-2``, ... (skipping a name that another
    input has as its own stem); names are compared case-insensitively, as some file systems do. A name
    whose output file (``output_dir/<name>.<format>``, any of ``formats``) would be one of the inputs
    themselves is skipped the same way, so an input is never overwritten. Names are kept byte for byte
    (an input name that is not valid UTF-8 gives an output name with the same bytes).
    """
    stems = [os.path.splitext(os.path.basename(os.fspath(path)))[0] or "audio" for path in audio_paths]
    natural = {stem.casefold() for stem in stems}
    inputs = {file_id for file_id in map(_file_id, audio_paths) if file_id is not None}

    def hits_an_input(name: str) -> bool:
        return any(_file_id(os.path.join(os.fspath(output_dir), f"{name}.{fmt}")) in inputs for fmt in formats)

    used: set[str] = set()
    names = []
    for stem in stems:
        name, number = stem, 0
        while (name.casefold() in used or (number and name.casefold() in natural)) or hits_an_input(name):
            number += 1
            name = f"{stem}-{number}"
        used.add(name.casefold())
        names.append(name)
    return names


def write_file(path: str | os.PathLike, write: Callable[[TextIO], None]) -> None:
    """Call ``write`` on a new UTF-8 text file and move it to ``path`` when it has succeeded: a failed
    write (a full disk) leaves no partial file behind and the previous ``path``, if any, intact."""
    path = os.fspath(path)
    folder, base = os.path.split(path)
    temporary = os.path.join(folder, f".{base}.{uuid.uuid4().hex[:8]}.part")  # created as open() would: umask
    file = open(temporary, "x", encoding="utf-8")
    try:
        with file:
            write(file)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_result(result: Transcription, audio_path: str | os.PathLike, output_dir: str | os.PathLike,
                 output_format: str, *, name: str | None = None, subtitles: SubtitleOptions | None = None) -> str:
    """Write ``result`` to ``output_dir/<name>.<format>`` (UTF-8; ``name`` defaults to the audio file's
    stem, see :func:`output_names` for names unique among several inputs); return that path. srt and
    vtt cues are cut by ``subtitles`` (:func:`subtitle_cues`).

    Raises:
        FileExistsError: that path is ``audio_path`` itself (an input is never overwritten).
        OSError: the folder cannot be created or the file written (nothing partial is left).
    """
    writer = get_writer(output_format, subtitles)
    if name is None:
        name = os.path.splitext(os.path.basename(os.fspath(audio_path)))[0] or "audio"
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(os.fspath(output_dir), f"{name}.{output_format}")
    if _file_id(path) is not None and _file_id(path) == _file_id(audio_path):
        raise FileExistsError(errno.EEXIST, "refusing to overwrite the input with its own transcript", path)
    write_file(path, lambda file: writer(result, file))
    return path
