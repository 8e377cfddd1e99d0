"""The GGUF layout: a Fun-ASR-Nano folder whose LLM is a GGUF file for llama.cpp
(``funasr-nano export gguf``).

Files: ``config.json`` (transformers' ``FunAsrNanoConfig``, with ``llm_gguf`` naming the GGUF file and
``use_low_frame_rate`` / ``tasks`` as in the transformers layout), ``audio.safetensors`` (the encoder
``model.audio_tower.*`` and the adaptor ``model.multi_modal_projector.*`` under transformers' names),
the tokenizer files, and ``llm-<type>.gguf`` (the LLM, :mod:`funasr_nano.export.gguf`); recognised by
:func:`funasr_nano.models.recognise.is_gguf_folder`, the convention both families share.

Only the encoder and adaptor are built in torch (:class:`AudioModel`); the LLM's weights are read by
llama.cpp alone, so the process never holds them twice.
"""

from __future__ import annotations

import json
import logging
import os

from ...errors import CheckpointError
from .. import weights
from ..weights import AUDIO_WEIGHTS, load_audio_weights

logger = logging.getLogger(__name__)


class AudioModel(weights.AudioModel):
    """The encoder and adaptor of a ``FunAsrNanoForConditionalGeneration``, with the same module paths
    (``model.audio_tower``, ``model.multi_modal_projector``) and ``config``, without the LLM."""

    def __init__(self, config):
        from transformers.models.fun_asr_nano.modeling_fun_asr_nano import FunAsrNanoMultiModalProjector

        super().__init__(config, FunAsrNanoMultiModalProjector)


def gguf_path(path: str) -> str:
    """The LLM GGUF file of a GGUF-layout folder (``llm_gguf`` in config.json, else the only ``.gguf``).

    Raises:
        CheckpointError: none, or several without ``llm_gguf``.
    """
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            named = json.load(f).get("llm_gguf")
    except (OSError, ValueError, AttributeError) as error:
        raise CheckpointError(f"{path}/config.json cannot be read: {error}") from error
    if named:
        file = os.path.join(path, named)
        if not os.path.isfile(file):
            raise CheckpointError(f"{path}: config.json names llm_gguf {named!r}, which is missing")
        return file
    found = sorted(n for n in os.listdir(path) if n.endswith(".gguf"))
    if len(found) != 1:
        raise CheckpointError(f"{path}: {len(found)} .gguf files and no llm_gguf in config.json to choose one")
    return os.path.join(path, found[0])


def load_gguf_folder(path: str):
    """``(AudioModel, tokenizer, config)`` of a GGUF-layout folder; the encoder and adaptor tensors are
    matched by name and shape.

    Raises:
        CheckpointError: unreadable files, or missing/unexpected/mis-shaped tensors (listed).
    """
    from transformers import AutoTokenizer, FunAsrNanoConfig

    try:
        config = FunAsrNanoConfig.from_pretrained(path)
    except Exception as error:
        raise CheckpointError(f"{path}/config.json is not a Fun-ASR-Nano config: {error}") from error
    model = AudioModel(config)
    load_audio_weights(model, path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as error:
        raise CheckpointError(f"{path}: cannot load the tokenizer: {error}") from error
    return model, tokenizer, config
