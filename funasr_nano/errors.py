"""Exceptions raised by funasr-nano.

Every error the package raises on purpose derives from :class:`FunASRNanoError`, so a caller can catch
them all with one ``except`` clause while letting programming errors (``TypeError``, ...) through.
"""

from __future__ import annotations


class FunASRNanoError(Exception):
    """Base class of all funasr-nano errors."""


class AudioDecodeError(FunASRNanoError):
    """The audio could not be read: corrupt data, unsupported container or codec, or a missing file."""


class AudioTooShortError(FunASRNanoError):
    """The audio is empty or shorter than the minimum duration the model can transcribe (0.1 s)."""


class CheckpointError(FunASRNanoError):
    """A checkpoint folder is incomplete or inconsistent (missing files, missing or unexpected tensors,
    tensors of the wrong shape, or a configuration the model does not support)."""


class InvalidOptionError(FunASRNanoError, ValueError):
    """An option (argument) with a value the package cannot use: the message names the option and the
    value. A ``ValueError`` too, as bad argument values are in Python."""


class MissingDependencyError(FunASRNanoError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it
    (e.g. ``pip install 'funasr-nano[llama]'``)."""


class UnsupportedLanguageError(FunASRNanoError, ValueError):
    """A language (hint or target) that the model or the requested task does not support."""


class ManifestError(FunASRNanoError, ValueError):
    """A training/evaluation manifest line cannot be used. The message starts with ``FILE:LINE:``;
    :attr:`path` and :attr:`line` hold them (``line`` is 1-based, 0 for the file as a whole)."""

    def __init__(self, path: str, line: int, reason: str):
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


class SynthesisError(FunASRNanoError):
    """Speech synthesis failed: espeak-ng (or sox, for noise) is missing or returned an error."""


class TrainingError(FunASRNanoError):
    """A training run cannot start or continue: a bad configuration, no usable examples, or a
    checkpoint to resume from that does not match the run."""


class TrainingDataError(TrainingError):
    """A training example whose audio does not decode, with ``on_bad_audio: error``; the message names
    the manifest line and the file (the CLI exits 1: an input failed)."""


class AudioTooLongError(FunASRNanoError):
    """The audio is longer than the model decodes well in one piece and voice activity detection, which
    cuts it at pauses, was turned off."""


class TranslatorError(FunASRNanoError):
    """A translator that cannot be used: a missing folder, a model that cannot translate, or a speech
    model asked for a task it was not trained for."""
