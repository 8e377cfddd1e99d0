"""funasr-nano: run, adapt and ship Fun-ASR-Nano speech LLMs from Python.

Pipeline, one module per stage: ``audio`` (decode, resample) -> ``vad`` (cut long audio) ->
``frontend`` (fbank, LFR) -> ``checkpoint`` (load weights) -> ``prompt`` -> ``model`` (encoder,
adaptor, LLM) -> ``decoding`` -> ``results`` -> ``writers``; ``streaming`` and ``translate`` on top of
the model; ``data``, ``synth``, ``batching``, ``train``, ``lora``, ``save`` for training; ``cli``.
"""

from .audio.io import load_audio
from .pipeline.decoding import DecodingOptions
from .errors import (
    AudioDecodeError,
    AudioTooLongError,
    AudioTooShortError,
    CheckpointError,
    FunASRNanoError,
    TranslatorError,
    UnsupportedLanguageError,
)
from .models.fun_asr_nano.frontend import Frontend, FrontendConfig
from .pipeline.speech_model import FunASRNano, load_model
from .results import Segment, Transcription
from .pipeline.translate import Translation, TranslationConfig

__version__ = "0.1.0"

__all__ = [
    "AudioDecodeError",
    "AudioTooLongError",
    "AudioTooShortError",
    "CheckpointError",
    "DecodingOptions",
    "Frontend",
    "FrontendConfig",
    "FunASRNano",
    "FunASRNanoError",
    "Segment",
    "Transcription",
    "Translation",
    "TranslationConfig",
    "TranslatorError",
    "UnsupportedLanguageError",
    "load_audio",
    "load_model",
]
