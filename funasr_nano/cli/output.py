"""What the transcribe and translate commands share: the output folder, output names, writing to
stdout, and the one line per failed input (see the exit codes in :mod:`funasr_nano.cli.main`)."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import sys
import tempfile
from typing import Callable, Sequence, TextIO

from ..audio.io import printable
from ..errors import FunASRNanoError, InvalidOptionError
from ..writers import output_names

logger = logging.getLogger("funasr_nano.cli")


class OutputError(Exception):
    """The command's output (stdout) cannot be written: the run stops (exit code 1)."""


def write_stdout(content: str | Callable[[TextIO], None]) -> None:
    """Print one line (``str``) or call a writer on stdout, then flush.

    Raises:
        BrokenPipeError: the reader went away (``| head``): :func:`funasr_nano.cli.main.main` exits quietly.
        OutputError: any other write error (``> /dev/full``), or text stdout's encoding cannot hold.
    """
    try:
        if callable(content):
            content(sys.stdout)
        else:
            print(content, file=sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as error:
        raise OutputError(f"cannot write to stdout: {error.strerror or error}") from error
    except UnicodeEncodeError as error:
        raise OutputError(f"cannot write to stdout: {error} (set PYTHONIOENCODING=utf-8)") from error


def prepare_output_dir(path: str | None) -> None:
    """Create ``--output-dir`` and check that files can be written in it, before any model is loaded.

    Raises:
        InvalidOptionError: naming the folder and the reason (exit code 2).
    """
    if path is None:
        return
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        if isinstance(error, (FileExistsError, NotADirectoryError)) or error.errno in (errno.EEXIST, errno.ENOTDIR):
            reason = "a path component is a file, not a folder"
        raise InvalidOptionError(f"--output-dir {printable(os.fspath(path))}: cannot write there ({reason})") from None


def plan_output_names(files: Sequence[str], output_dir: str | None, formats: Sequence[str]) -> list[str | None]:
    """Output names under ``--output-dir`` (:func:`funasr_nano.writers.output_names`), logging each
    input whose name had to change; ``None`` for every input without ``--output-dir``."""
    if output_dir is None:
        return [None] * len(files)
    names = output_names(files, output_dir, formats)
    for path, name in zip(files, names):
        stem = os.path.splitext(os.path.basename(path))[0] or "audio"
        if name != stem:
            logger.warning("%s: writing %s.* (%s.* is another input's output, or an input itself)",
                           printable(path), printable(name), printable(stem))
    return names


@dataclasses.dataclass
class Failures:
    """Counts failed inputs and reports each as one line on stderr (with ``-v``, its traceback)."""

    verbose: bool
    count: int = 0

    def add(self, source: str, error: BaseException) -> None:
        """``source`` failed with ``error``; a non-project exception is marked unexpected (a bug, or
        the machine: out of memory)."""
        message = printable(str(error)) or type(error).__name__
        if not isinstance(error, FunASRNanoError):
            message = f"unexpected {type(error).__name__}: {message}"
            if not self.verbose:
                message += " (run with -v for the traceback)"
        self.add_line(source, message, error)

    def add_line(self, source: str, message: str, error: BaseException | None = None) -> None:
        """``source`` failed: one line ``error: <source>: <message>`` (the source once, even when the
        message already starts with it), ``error``'s traceback after it with ``-v``."""
        self.count += 1
        source, message = printable(source), printable(message)
        if not message.startswith(source):
            message = f"{source}: {message}"
        logger.error("%s", message, exc_info=error if self.verbose and error is not None else None)

    def exit_code(self, total: int) -> int:
        """Logs the summary line; 1 if any input failed, else 0."""
        if self.count:
            logger.warning("%d of %d files failed", self.count, total)
        return 1 if self.count else 0
