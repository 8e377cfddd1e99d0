"""The GGUF layout of Qwen3-ASR: a folder whose LLM (the thinker) is a GGUF file for llama.cpp
(``funasr-nano export gguf`` of a Qwen3-ASR checkpoint, :func:`funasr_nano.export.thinker_gguf.export_gguf_folder`).

Files: ``config.json`` (transformers' ``Qwen3ASRConfig``, with ``llm_gguf`` naming the GGUF file,
``mrope_section`` and ``support_languages``), ``audio.safetensors`` (the audio encoder
``model.audio_tower.*`` and projector ``model.multi_modal_projector.*`` under transformers' names, float32),
the tokenizer files, ``chat_template.json``, ``preprocessor_config.json`` and ``llm-<type>.gguf``.

Only the audio encoder and projector are built in torch (:class:`AudioModel`); the LLM's weights are read
by llama.cpp alone. A folder that also holds ``audio.onnx`` (what ``export gguf`` writes now) loads on the
light runtime instead (:mod:`.light`, no torch); this module serves folders without it.
"""

from __future__ import annotations

import json
import logging
import os

import torch

from ...errors import CheckpointError
from .. import weights
from ..weights import AUDIO_WEIGHTS, load_audio_weights

logger = logging.getLogger(__name__)


class AudioModel(weights.AudioModel):
    """The audio encoder and projector of a ``Qwen3ASRForConditionalGeneration``, with the same module
    paths (``model.audio_tower``, ``model.multi_modal_projector``) and ``config``, without the LLM."""

    def __init__(self, config):
        from transformers.models.qwen3_asr.modeling_qwen3_asr import Qwen3ASRMultiModalProjector

        super().__init__(config, Qwen3ASRMultiModalProjector)


def gguf_path(path: str) -> str | None:
    """The thinker's GGUF file if ``path`` is a Qwen3-ASR folder in the GGUF layout (``config.json``
    names ``llm_gguf`` and ``audio.safetensors`` is there: :func:`funasr_nano.models.recognise.is_gguf_folder`,
    the convention both families share), else ``None``. The file itself may be missing (:func:`load_gguf_folder`
    says so)."""
    file = os.path.join(path, "config.json")
    if not (os.path.isfile(file) and os.path.isfile(os.path.join(path, AUDIO_WEIGHTS))):
        return None
    try:
        with open(file, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    if not (isinstance(config, dict) and config.get("model_type") == "qwen3_asr" and config.get("llm_gguf")):
        return None
    return os.path.join(path, str(config["llm_gguf"]))


def load_gguf_folder(path: str, *, device: str | torch.device = "cpu"):
    """``(LoadedCheckpoint, gguf_path)`` of a GGUF-layout folder: the checkpoint's ``model`` is an
    :class:`AudioModel` (the audio tensors matched by name and shape), the rest as
    :func:`.checkpoint.load_checkpoint` gives it (``mrope_section`` from ``config.json``); ``gguf_path`` the
    LLM file, not opened here: :func:`funasr_nano.load.load_model` checks its M-RoPE sections against
    ``mrope_section`` (:func:`funasr_nano.export.thinker_gguf.check_thinker_gguf`) before the engine reads it.

    Raises:
        CheckpointError: unreadable files, missing/unexpected/mis-shaped tensors (listed), a missing
            GGUF file.
    """
    from transformers import Qwen3ASRConfig

    from .checkpoint import LoadedCheckpoint, chat_template, load_tokenizer, read_feature_config

    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            raw = json.load(f)
        config = Qwen3ASRConfig.from_pretrained(path)
    except Exception as error:
        raise CheckpointError(f"{path}/config.json is not a Qwen3-ASR config: {error}") from error
    gguf_file = os.path.join(path, str(raw["llm_gguf"]))
    if not os.path.isfile(gguf_file):
        raise CheckpointError(f"{path}: config.json names llm_gguf {raw['llm_gguf']!r}, which is missing")
    section = tuple(raw["mrope_section"]) if raw.get("mrope_section") else None
    model = AudioModel(config)
    load_audio_weights(model, path)  # the sinusoidal table is computed, not stored
    model.eval().requires_grad_(False).to(device=device, dtype=torch.float32)
    tokenizer = load_tokenizer(path)
    languages = tuple(str(x) for x in raw.get("support_languages") or ())
    checkpoint = LoadedCheckpoint(model=model, tokenizer=tokenizer, chat_template=chat_template(path, tokenizer),
                                  layout="gguf", path=path, mrope_section=section, support_languages=languages,
                                  feature_config=read_feature_config(path))
    logger.info("loaded Qwen3-ASR GGUF-layout folder %s (LLM %s)", path, os.path.basename(gguf_file))
    return checkpoint, gguf_file
