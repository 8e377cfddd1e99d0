"""``funasr-nano align AUDIO --text TEXT --aligner DIR``: forced alignment of a known transcript with
Qwen3-ForcedAligner (:mod:`funasr_nano.models.qwen3_asr.aligner`): the words of the text with their start
and end times in the audio (at most 180 s), as JSON (a list of :class:`~funasr_nano.results.Word`) or TSV
(``start``, ``end`` in milliseconds and ``word``, as the ``transcribe --format tsv`` columns).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from ..errors import InvalidOptionError
from .output import write_stdout

FORMATS = ("json", "tsv")


def add_parser(commands, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("align", parents=parents,
                                 help="time the words of a known transcript (Qwen3-ForcedAligner)",
                                 description="Forced alignment: the words of a given transcript with their times in "
                                             "the audio (at most 180 s), by Qwen3-ForcedAligner.")
    parser.add_argument("audio", metavar="AUDIO", help="audio file (wav, flac, mp3, ...)")
    text = parser.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="the transcript")
    text.add_argument("--text-file", metavar="FILE", help="a UTF-8 file holding the transcript")
    parser.add_argument("--aligner", metavar="DIR", required=True,
                        help="Qwen3-ForcedAligner checkpoint folder (official or transformers layout)")
    parser.add_argument("--language", help="language of the transcript (name or code; only Japanese and Korean "
                                           "change how words are cut)")
    parser.add_argument("--format", default="json", choices=FORMATS, help="output format (default: json)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N, mps (default: cpu)")
    parser.set_defaults(run=run)


def read_text(args: argparse.Namespace) -> str:
    """The transcript of ``--text`` or ``--text-file``.

    Raises:
        InvalidOptionError: an unreadable file, or no letters or digits to align.
    """
    if args.text_file is None:
        text = args.text
    else:
        try:
            with open(args.text_file, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidOptionError(f"--text-file {args.text_file}: cannot read it as UTF-8 text: {error}") from None
    if not any(char.isalnum() for char in text):
        raise InvalidOptionError("--text: the transcript has no letters or digits to align")
    return text.strip()


def run(args: argparse.Namespace) -> int:
    from ..load import load_aligner

    text = read_text(args)
    aligner = load_aligner(args.aligner, device=args.device)
    words = aligner.align(args.audio, text, args.language)
    if args.format == "json":
        write_stdout(json.dumps([dataclasses.asdict(word) for word in words], ensure_ascii=False))
    else:
        write_stdout("start\tend\tword")
        for word in words:
            write_stdout(f"{round(word.start * 1000)}\t{round(word.end * 1000)}\t{word.word.strip()}")
    return 0
