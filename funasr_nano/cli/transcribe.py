"""``funasr-nano transcribe FILE...``: speech -> text, one result per file, lazily and in batches.

Files up to ``--max-duration`` seconds are decoded whole, ``--batch-size`` of them together; longer
files are cut by VAD (``--vad``/``--no-vad`` force it on or off) and their segments batched. Results go
to stdout, or with ``--output-dir`` to ``DIR/<name>.<format>`` (names: :func:`funasr_nano.writers.output_names`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging

from ..errors import InvalidOptionError, UnsupportedLanguageError
from ..options import AdapterOptions, SubtitleOptions, TranscribeOptions
from ..writers import FORMATS, get_writer, write_result
from .options import (
    add_family_flags, add_model_flags, add_option_flags, flag_names, load_model_from_args, naming_flags, options_from_args,
)
from .output import Failures, plan_output_names, prepare_output_dir, printable, write_stdout

logger = logging.getLogger("funasr_nano.cli")


def add_parser(commands, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("transcribe", help="transcribe audio files", parents=parents,
                                 description="Transcribe audio files; a file that fails is reported and the "
                                             "others go on.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, mp3, ogg, m4a, webm, ...)")
    add_model_flags(parser)
    parser.add_argument("--format", default="txt", choices=[*FORMATS, "all"],
                        help="output format (default: txt; all: every format, needs --output-dir)")
    parser.add_argument("--output-dir", metavar="DIR",
                        help="write DIR/<file stem>.<format> per input instead of printing (a stem shared by "
                             "several inputs gets -1, -2, ...)")
    add_option_flags(parser, AdapterOptions, exclude=("translator",))  # --lora
    add_family_flags(parser, "transcribe")  # --aligner (Qwen3-ASR), ...
    add_option_flags(parser, TranscribeOptions)
    add_option_flags(parser.add_argument_group(GROUP_TITLE), SubtitleOptions)
    parser.set_defaults(run=run)


GROUP_TITLE = "subtitles (srt and vtt cues cut at word times; need --word-timestamps)"


def subtitle_options(args: argparse.Namespace, options: TranscribeOptions) -> SubtitleOptions:
    """``--max-line-width``, ``--max-line-count``, ``--max-words-per-line``, ``--highlight-words``.

    Raises:
        InvalidOptionError: a bad value, or any of them without ``--word-timestamps`` (naming the flags).
    """
    subtitles = options_from_args(SubtitleOptions, args)
    if subtitles.active and not options.word_timestamps:
        given = [flag for field, flag in flag_names(SubtitleOptions).items()
                 if getattr(subtitles, field) != getattr(SubtitleOptions(), field)]
        raise InvalidOptionError(f"{', '.join(given)}: subtitles cut at word times need --word-timestamps")
    return subtitles


def check_format(args: argparse.Namespace) -> None:
    """Formats that need ``--output-dir``.

    Raises:
        InvalidOptionError: naming the flag.
    """
    if args.format == "all" and not args.output_dir:
        raise InvalidOptionError("--format all writes several files: give --output-dir")
    if args.format in ("srt", "vtt", "tsv") and len(args.files) > 1 and not args.output_dir:
        raise InvalidOptionError(f"--format {args.format} for several files: give --output-dir")


def emit(args: argparse.Namespace, path: str, name: str | None, result, failures: Failures,
         subtitles: SubtitleOptions | None = None) -> None:
    """Print ``result`` (a :class:`~funasr_nano.results.Transcription`) or write it under ``--output-dir``
    as ``name`` (srt and vtt cues cut by ``subtitles``); a file that cannot be written counts as a failure
    of that input."""
    if args.output_dir:
        for output_format in FORMATS if args.format == "all" else (args.format,):
            try:
                written = write_result(result, path, args.output_dir, output_format, name=name, subtitles=subtitles)
                logger.info("wrote %s", printable(written))
            except OSError as error:  # a full disk, or the output would replace the input
                failures.add_line(path, f"cannot write its {output_format} output: {error}", error)
                return
    elif args.format == "json":
        write_stdout(json.dumps({"file": printable(path), **dataclasses.asdict(result)}, ensure_ascii=False))
    elif args.format == "txt":
        write_stdout(result.text if len(args.files) == 1 else f"{printable(path)}\t{result.text}")
    else:
        write_stdout(lambda file: get_writer(args.format, subtitles)(result, file))


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..results import TranscriptionFailure

    check_format(args)
    options = options_from_args(TranscribeOptions, args)  # bad values fail here, before loading the model
    subtitles = subtitle_options(args, options)
    adapters = options_from_args(AdapterOptions, args)
    prepare_output_dir(args.output_dir)
    names = plan_output_names(args.files, args.output_dir, FORMATS if args.format == "all" else (args.format,))
    model = load_model_from_args(args, lora=adapters.adapters("default"))
    try:
        results = model.transcribe_batch(args.files, options)  # options checked against the model here
    except (InvalidOptionError, UnsupportedLanguageError) as error:
        raise naming_flags(error, TranscribeOptions) from None
    failures = Failures(verbose=args.verbose)
    with tqdm(total=len(args.files), unit="file", disable=args.quiet or len(args.files) < 2, desc="files",
              dynamic_ncols=True) as files_bar:
        for path, name, result in zip(args.files, names, results):
            if isinstance(result, TranscriptionFailure):
                failures.add(path, result.error)
            else:
                emit(args, path, name, result, failures, subtitles)
            files_bar.update()
    return failures.exit_code(len(args.files))

