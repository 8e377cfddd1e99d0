"""Qwen3-ASR on the light runtime: a GGUF-layout folder run without torch or transformers.

The same prompts and output parsing as :class:`.model.Qwen3AsrModel` (:class:`.prompt.Qwen3AsrPrompts`), with
the log-mel computed in numpy (:class:`.frontend.LogMelFrontend`), the audio tower (AuT encoder + projector)
in onnxruntime (``audio.onnx`` / ``audio-int8.onnx``, one attention window per call,
:mod:`funasr_nano.export.onnx_audio_qwen3_asr`), the tokenizer and chat template through
:class:`funasr_nano.models.light_tokenizer.LightTokenizer`, and the thinker in llama.cpp.

The windows: transformers' encoder attends within windows of ``window_frames`` mel frames (8 s as
released; ``n_window_infer`` rounded down to whole 100-frame chunks) and never across them, so the clip's
log-mel is cut into windows of that many frames, each padded with zeros to whole chunks (as
``Qwen3ASRFeatureExtractor`` pads the clip) and run alone; the embeddings are laid end to end. This is the
``encoder_attention="windowed"`` computation of the torch path (its default).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from ...errors import CheckpointError
from ..base import FamilyModel
from ..json_files import read_json_object
from ..light_tokenizer import LightTokenizer
from ..onnx_audio import OnnxAudioEncoder, audio_onnx_file, require_audio_onnx_file
from .frontend import FrontendConfig, LogMelFrontend
from .prompt import SUPPORTED_LANGUAGES, Qwen3AsrPrompts, num_audio_tokens

logger = logging.getLogger(__name__)

# as .model.MAX_AUDIO_SECONDS (that module needs torch): the reference decodes up to 1200 s in one piece
MAX_AUDIO_SECONDS = 1200.0
# the metadata keys funasr_nano.export.onnx_audio_qwen3_asr writes into audio.onnx
CHUNK_FRAMES_KEY = "chunk_frames"
WINDOW_FRAMES_KEY = "window_frames"


def _read_json(file: str) -> dict | None:
    """``file`` as a JSON object, ``None`` when it is absent.

    Raises:
        CheckpointError: unreadable, not JSON, or not an object.
    """
    return read_json_object(file) if os.path.isfile(file) else None


def light_folder(path: str, encoder_precision: str = "fp32") -> str | None:
    """The thinker's GGUF file of ``path`` if it is a Qwen3-ASR GGUF-layout folder the light runtime runs at
    ``encoder_precision`` (``config.json`` with ``model_type: qwen3_asr`` and ``llm_gguf``, and the ONNX
    audio file), else ``None``. The GGUF file itself may be missing (:class:`LightQwen3AsrModel` says so)."""
    if audio_onnx_file(path, encoder_precision) is None:
        return None
    try:
        config = _read_json(os.path.join(path, "config.json"))
    except CheckpointError:
        return None
    if not config or config.get("model_type") != "qwen3_asr" or not isinstance(config.get("llm_gguf"), str):
        return None
    return os.path.join(path, config["llm_gguf"])


def _feature_settings(path: str) -> dict:
    """``preprocessor_config.json``, else the ``feature_extractor`` of ``processor_config.json``, else ``{}``
    (as :func:`.checkpoint.read_feature_config`, which needs torch)."""
    found = _read_json(os.path.join(path, "preprocessor_config.json"))
    if found is None:
        found = (_read_json(os.path.join(path, "processor_config.json")) or {}).get("feature_extractor")
    return found if isinstance(found, dict) else {}


def _chat_template(path: str, tokenizer: LightTokenizer) -> str | None:
    """The processor's template (``chat_template.json`` / ``.jinja``), else the tokenizer's (as
    :func:`.checkpoint.chat_template`)."""
    jinja = os.path.join(path, "chat_template.jinja")
    if os.path.isfile(jinja):
        with open(jinja, encoding="utf-8") as f:
            return f.read()
    entry = _read_json(os.path.join(path, "chat_template.json"))
    if entry is not None:
        if not isinstance(entry.get("chat_template"), str):
            raise CheckpointError(f"{path}/chat_template.json holds no chat_template")
        return entry["chat_template"]
    template = tokenizer.chat_template
    return template.get("default") if isinstance(template, dict) else template


class LightQwen3AsrModel(Qwen3AsrPrompts, FamilyModel):
    """A Qwen3-ASR GGUF-layout folder on numpy + onnxruntime + llama.cpp (no torch).

    Args:
        path: the folder (``funasr-nano export gguf`` of a Qwen3-ASR checkpoint), with ``audio.onnx``
            (and ``audio-int8.onnx``).
        encoder_precision: ``"fp32"`` (``audio.onnx``) or ``"int8"`` (``audio-int8.onnx``).
        n_threads: onnxruntime's threads (``None``: one per core).

    Raises:
        CheckpointError: a missing ONNX or GGUF file (the GGUF's M-RoPE sections are checked against
            ``config.json``'s by :func:`funasr_nano.load.load_model`), an unreadable config, tokenizer or
            chat template.
    """

    def __init__(self, path: str, encoder_precision: str = "fp32", *, n_threads: int | None = None):
        self.path = path
        self.encoder_precision = encoder_precision
        file = require_audio_onnx_file(path, encoder_precision)
        config = _read_json(os.path.join(path, "config.json")) or {}
        self.llm_gguf = os.path.join(path, str(config.get("llm_gguf")))
        if not os.path.isfile(self.llm_gguf):
            raise CheckpointError(f"{path}: config.json names llm_gguf {config.get('llm_gguf')!r}, which is missing")
        section = config.get("mrope_section")
        # checked against the GGUF file by funasr_nano.load (export.thinker_file) before llama.cpp reads it
        self.mrope_section = tuple(int(v) for v in section) if section else None
        audio = dict(config.get("audio_config") or {})
        n_window = int(audio.get("n_window", 50))
        self.frontend = LogMelFrontend(FrontendConfig.from_checkpoint(_feature_settings(path), n_window))
        self.n_window = n_window
        self.encoder = OnnxAudioEncoder(file, n_threads)
        metadata = self.encoder.metadata
        try:
            self.chunk_frames, self.window_frames = int(metadata[CHUNK_FRAMES_KEY]), int(metadata[WINDOW_FRAMES_KEY])
        except (KeyError, ValueError):
            raise CheckpointError(f"{file}: not a Qwen3-ASR audio tower export (its metadata lacks "
                                  f"{CHUNK_FRAMES_KEY}/{WINDOW_FRAMES_KEY}); export the folder again") from None
        if self.chunk_frames != 2 * n_window or self.window_frames % self.chunk_frames:
            raise CheckpointError(f"{file}: chunks of {self.chunk_frames} frames and windows of {self.window_frames} "
                                  f"do not fit config.json's n_window {n_window}")
        self.tokenizer = LightTokenizer.from_pretrained(path)
        self.languages = tuple(str(x) for x in config.get("support_languages") or ()) or SUPPORTED_LANGUAGES
        if "audio_token_id" not in config:
            raise CheckpointError(f"{path}/config.json has no audio_token_id")
        self._setup_prompts(_chat_template(path, self.tokenizer), int(config["audio_token_id"]))

    @property
    def llm(self):
        raise CheckpointError(f"{self.path}: on the light runtime the LLM is the GGUF file, run by llama.cpp")

    @property
    def max_audio_seconds(self) -> float:
        return MAX_AUDIO_SECONDS

    # -- audio -> embeddings --------------------------------------------------------------------------

    def features(self, waveform: np.ndarray) -> np.ndarray:
        """``(samples,)`` 16 kHz float32 -> ``(mel_bins, frames)`` log-mel, 10 ms per frame, unpadded."""
        return self.frontend(waveform)

    def encode(self, features: np.ndarray) -> np.ndarray:
        """``(mel_bins, frames)`` log-mel -> ``(num_audio_tokens(frames), llm_hidden)`` float32: one
        onnxruntime call per attention window of :attr:`window_frames` frames (the module docstring)."""
        mel_bins, frames = features.shape
        pieces = []
        for start in range(0, frames, self.window_frames):
            window = features[:, start:start + self.window_frames]
            real = window.shape[1]
            padded = -(-real // self.chunk_frames) * self.chunk_frames
            batch = np.zeros((1, mel_bins, padded), dtype=np.float32)
            batch[0, :, :real] = window
            mask = np.zeros((1, padded), dtype=np.int64)
            mask[0, :real] = 1
            pieces.append(self.encoder(input_features=batch, input_features_mask=mask))
        if not pieces:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(pieces, axis=0)

    def audio_positions(self, samples: int) -> int:
        return num_audio_tokens(self.frontend.num_frames(samples), self.n_window)

    def audio_embeddings(self, waveform: np.ndarray) -> np.ndarray:
        """``(num_audio, llm_hidden)`` float32, as :meth:`.model.Qwen3AsrModel.audio_embeddings`."""
        embeddings = self.encode(self.features(waveform))
        expected = self.audio_positions(int(np.asarray(waveform).shape[0]))
        assert embeddings.shape[0] == expected, (embeddings.shape, expected)
        return embeddings
