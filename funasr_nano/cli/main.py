"""Command line: ``funasr-nano transcribe FILE... --model DIR``, ``funasr-nano translate FILE...`` and
``funasr-nano tiny DIR``; training: ``funasr-nano data check MANIFEST``, ``funasr-nano data synth TEXT
DIR``, ``funasr-nano train --config CONFIG.yaml`` and ``funasr-nano lora merge BASE ADAPTER OUTPUT``;
export: ``funasr-nano export gguf MODEL OUT_DIR``; corpora: ``funasr-nano transcribe-corpus SOURCE OUT --ray``;
serving: ``funasr-nano serve [--model DIR]``; another LLM: ``funasr-nano swap BASE --llm LLM_DIR OUT``;
forced alignment of a known transcript: ``funasr-nano align AUDIO --text TEXT --aligner DIR``.

One module per command group: :mod:`.transcribe`, :mod:`.translate`, :mod:`.align`, :mod:`.training`, :mod:`.export`,
:mod:`.swap`; the decoding, transcription, translation and VAD flags are derived from the option
dataclasses (:mod:`.options`).

The error boundary: every failure is one line on stderr, ``error: ...``, naming the file or the option
(``-v`` adds the traceback), and the exit status says what happened:

===== ==========================================================================================
code  meaning
===== ==========================================================================================
0     every input was processed
1     some inputs failed (each reported on its own line; the others were processed), an output
      file could not be written, or stdout could not be written (``> /dev/full``: the run stops)
2     bad arguments (argparse's usage errors, and option values the option dataclasses refuse), an
      unusable ``--output-dir``, or an unusable model, adapter or translator: found before any
      input is processed
3     internal error: an unexpected exception outside the per-input isolation (a bug; ``-v`` shows
      where)
141   stdout was closed early (``| head``): a quiet exit, as Unix tools killed by SIGPIPE
130   interrupted (Ctrl-C)
===== ==========================================================================================
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from ..errors import FunASRNanoError
from . import align, corpus, export, serve, swap, training, transcribe, translate
from .output import OutputError, printable

logger = logging.getLogger("funasr_nano.cli")

EXIT_OK, EXIT_FAILED_INPUTS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_BROKEN_PIPE = 128 + 13  # 128 + SIGPIPE, what a shell reports for a Unix tool whose reader went away
EXIT_INTERRUPTED = 128 + 2  # 128 + SIGINT

EPILOG = """exit status: 0 all inputs processed; 1 some inputs failed (the others were processed) or an output
could not be written; 2 bad arguments, an unusable --output-dir, model, adapter or translator (before any
input); 3 internal error (a bug: run with -v for the traceback); 141 stdout closed early (| head)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="funasr-nano", description="Fun-ASR-Nano speech recognition",
                                     epilog=EPILOG)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO) and show tracebacks")
    # -v after the command too (funasr-nano transcribe a.wav -v); SUPPRESS keeps a -v given before it
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                         help="log progress (INFO) and show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    transcribe.add_parser(commands, [verbose])
    translate.add_parser(commands, [verbose])
    align.add_parser(commands, [verbose])
    training.add_parsers(commands, [verbose])
    export.add_parsers(commands, [verbose])
    corpus.add_parser(commands, [verbose])
    serve.add_parser(commands, [verbose])
    swap.add_parsers(commands, [verbose])
    for command in commands.choices.values():
        command.epilog = EPILOG
    return parser


class _Formatter(logging.Formatter):
    """``error: ...``/``warning: ...`` as command-line tools write them; ``-v`` progress lines name
    their logger. Undecodable file-name bytes are escaped (``\\xe9``)."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno >= logging.WARNING:
            prefix = f"{record.levelname.lower()}: "
        else:
            prefix = f"{record.levelname} {record.name}: "
        text = prefix + " ".join(line.strip() for line in record.getMessage().splitlines())  # one line
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return printable(text)


class _TqdmHandler(logging.StreamHandler):
    """Writes through :func:`tqdm.tqdm.write` so that log lines do not break a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # stderr gone: nothing left to tell
            self.handleError(record)


def setup_logging(verbose: bool) -> None:
    handler = _TqdmHandler()
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _TqdmHandler)]:  # main() called again in one process
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:
        if sys.modules.get("transformers") is not None:  # already imported
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
        else:  # the same, read when transformers is imported (the light runtime never imports it)
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _detach_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of what could not be written
    does not fail again ("Exception ignored ... BrokenPipeError"); the recipe of the Python docs
    (signal module, "Note on SIGPIPE"). Only for the process's own stdout (not when a test captures it)."""
    if sys.stdout is not sys.__stdout__:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (table in the module docstring)."""
    args = build_parser().parse_args(argv)  # a usage error exits 2 here (argparse)
    setup_logging(args.verbose)
    try:
        return args.run(args)
    except BrokenPipeError:
        _detach_stdout()
        return EXIT_BROKEN_PIPE
    except OutputError as error:
        logger.error("%s", error, exc_info=error if args.verbose else None)
        _detach_stdout()
        return EXIT_FAILED_INPUTS
    except KeyboardInterrupt:
        logger.error("interrupted")
        return EXIT_INTERRUPTED
    except FunASRNanoError as error:  # bad options, an unusable model/adapter/translator/--output-dir
        logger.error("%s", error, exc_info=error if args.verbose else None)
        return EXIT_USAGE
    except Exception as error:  # a bug: never disguised as a usage error
        hint = "" if args.verbose else " (run with -v for the traceback)"
        logger.error("internal error: %s: %s%s", type(error).__name__, error, hint,
                     exc_info=error if args.verbose else None)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
