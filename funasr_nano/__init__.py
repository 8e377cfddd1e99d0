"""funasr-nano: run, adapt and ship Fun-ASR-Nano speech LLMs from Python.

The pipeline, one package per role: ``audio`` (decode, resample, VAD) -> ``models`` (a speech-LLM family:
frontend, checkpoint map, prompt; the chat format) -> ``engines`` (LLM input embeddings -> tokens) ->
``pipeline`` (transcribe, stream, translate) -> ``writers`` / ``server`` / ``cli``; ``training`` beside
them, ``export`` under the engines that run what it writes; ``testing`` writes tiny random checkpoints.
Options live in ``options``, results in ``results``, errors in ``errors``. The layer order and its test:
docs/layout.md, tests/test_import_graph.py.
"""

from .audio.io import load_audio
from .errors import (
    AudioDecodeError,
    AudioTooLongError,
    AudioTooShortError,
    CheckpointError,
    FunASRNanoError,
    InvalidOptionError,
    TranslatorError,
    UnsupportedLanguageError,
)
from .load import load_aligner, load_model
from .options import DecodingOptions, TranscribeOptions, TranslationOptions
from .pipeline.speech_model import SpeechModel
from .pipeline.translate import Translation
from .results import Segment, Transcription, TranscriptionFailure, TranscriptionInfo
from .version import __version__

__all__ = [
    "AudioDecodeError",
    "AudioTooLongError",
    "AudioTooShortError",
    "CheckpointError",
    "DecodingOptions",
    "FunASRNanoError",
    "InvalidOptionError",
    "Segment",
    "SpeechModel",
    "TranscribeOptions",
    "Transcription",
    "TranscriptionFailure",
    "TranscriptionInfo",
    "Translation",
    "TranslationOptions",
    "TranslatorError",
    "UnsupportedLanguageError",
    "load_aligner",
    "load_audio",
    "load_model",
]
