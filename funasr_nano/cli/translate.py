"""``funasr-nano translate FILE...``: Chinese speech -> English text, sentence by sentence.

Failures are counted and reported as by ``transcribe``: one line per failed file, a summary line and
exit code 1; the model and the translator are loaded (and checked) once, before any file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os

from ..errors import InvalidOptionError
from ..options import AdapterOptions, TranslationOptions
from ..writers import get_writer, write_file, write_result
from .options import add_model_flags, add_option_flags, load_model_from_args, options_from_args
from .output import Failures, OutputError, plan_output_names, prepare_output_dir, printable, write_stdout
from .transcribe import check_format

logger = logging.getLogger("funasr_nano.cli")

FORMATS = ("txt", "json", "srt", "vtt", "tsv")


def add_parser(commands, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("translate", help="translate Chinese speech into English text", parents=parents,
                                 description="Translate speech (any length: cut at pauses); unified: the speech "
                                             "LLM translates in one pass; cascade: transcribe, then translate each "
                                             "sentence.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (any length: cut at pauses)")
    add_model_flags(parser)
    add_option_flags(parser, AdapterOptions)  # --lora, --translator
    parser.add_argument("--format", default="txt", choices=FORMATS, help="output format (default: txt)")
    parser.add_argument("--output-dir", metavar="DIR", help="write DIR/<file stem>.<format> per input")
    parser.add_argument("--stream", action="store_true",
                        help="print each sentence as soon as it is translated (json: one event a line)")
    add_option_flags(parser, TranslationOptions)
    parser.set_defaults(run=run)


def _write(args: argparse.Namespace, path: str, name: str | None, result, target_language: str,
           failures: Failures) -> None:
    """Print the :class:`~funasr_nano.pipeline.translate.Translation` or write it under ``--output-dir``."""
    if args.format == "json":
        payload = json.dumps({"file": printable(path), **result.to_dict()}, ensure_ascii=False)
        if not args.output_dir:
            write_stdout(payload)
            return
        write = lambda file: print(payload, file=file)  # noqa: E731
    else:
        as_transcription = result.to_transcription(target_language)  # what the subtitle/text writers take
        if not args.output_dir:
            if args.format == "txt":
                write_stdout(result.text if len(args.files) == 1 else f"{printable(path)}\t{result.text}")
            else:
                write_stdout(lambda file: get_writer(args.format)(as_transcription, file))
            return
    try:
        if args.format == "json":
            written = os.path.join(args.output_dir, f"{name}.json")
            write_file(written, write)
        else:
            written = write_result(as_transcription, path, args.output_dir, args.format, name=name)
        logger.info("wrote %s", printable(written))
    except OSError as error:
        failures.add_line(path, f"cannot write its {args.format} output: {error}", error)


def _translate_one(args: argparse.Namespace, model, path: str, options: TranslationOptions, translator):
    """The :class:`Translation` of ``path``; with ``--stream`` (to stdout) its events are printed as
    they come."""
    from ..pipeline.translate import SentenceTranslated, TranslationFinished

    result = None
    for event in model.translate_stream(path, options, translator=translator):
        if isinstance(event, TranslationFinished):
            result = event.translation
        elif args.stream and not args.output_dir:
            if args.format == "json":
                write_stdout(json.dumps({"file": printable(path), "event": type(event).__name__,
                                         **dataclasses.asdict(event)}, ensure_ascii=False))
            elif isinstance(event, SentenceTranslated):
                write_stdout(event.sentence.text)
    return result


def choose_mode(model, translator: str | None) -> str:
    """The mode ``translate`` runs without ``--mode``: cascade with ``--translator`` when one is given;
    unified when the model (or a loaded adapter) was trained for speech translation; cascade with the
    model's own LLM when it was trained for text translation; else unified, which then names what is
    missing."""
    if translator:
        return "cascade"
    if model.supports_task("translate"):
        return "unified"
    return "cascade" if model.supports_task("text_translate") else "unified"


def run(args: argparse.Namespace) -> int:
    from ..pipeline.translate import resolve_translator

    mode_given = hasattr(args, "mode")
    adapters = options_from_args(AdapterOptions, args)
    if adapters.translator and mode_given and args.mode != "cascade":
        raise InvalidOptionError("--translator is only used with --mode cascade")
    check_format(args)
    options = options_from_args(TranslationOptions, args)  # bad values fail here, before loading the model
    prepare_output_dir(args.output_dir)
    names = plan_output_names(args.files, args.output_dir, (args.format,))
    model = load_model_from_args(args, lora=adapters.adapters("translate"))  # a plain --lora PATH: translate
    if not mode_given:
        options = dataclasses.replace(options, mode=choose_mode(model, adapters.translator))
        logger.info("translation mode: %s", options.mode)
    translator = resolve_translator(model, options.mode, adapters.translator)  # loaded once, before any file
    failures = Failures(verbose=args.verbose)
    for path, name in zip(args.files, names):
        try:
            result = _translate_one(args, model, path, options, translator)
        except (BrokenPipeError, OutputError):
            raise  # stdout is gone: the run stops (see funasr_nano.cli.main)
        except Exception as error:  # as transcribe_batch: any failure stays with its input
            failures.add(path, error)
            continue
        if not (args.stream and not args.output_dir):
            _write(args, path, name, result, options.target_language, failures)
    return failures.exit_code(len(args.files))
