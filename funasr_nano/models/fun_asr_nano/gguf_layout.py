"""The GGUF layout: a Fun-ASR-Nano folder whose LLM is a GGUF file for llama.cpp
(``funasr-nano export gguf``).

Files: ``config.json`` (transformers' ``FunAsrNanoConfig``, with ``llm_gguf`` naming the GGUF file and
``use_low_frame_rate`` / ``tasks`` as in the transformers layout), ``audio.safetensors`` (the encoder
``model.audio_tower.*`` and the adaptor ``model.multi_modal_projector.*`` under transformers' names),
the tokenizer files, and ``llm-<type>.gguf`` (the LLM, :mod:`funasr_nano.export.gguf`).

Only the encoder and adaptor are built in torch (:class:`AudioModel`); the LLM's weights are read by
llama.cpp alone, so the process never holds them twice.
"""

from __future__ import annotations

import json
import logging
import os

import torch

from ...errors import CheckpointError

logger = logging.getLogger(__name__)

AUDIO_WEIGHTS = "audio.safetensors"
AUDIO_PREFIXES = ("model.audio_tower.", "model.multi_modal_projector.")


class AudioModel(torch.nn.Module):
    """The encoder and adaptor of a ``FunAsrNanoForConditionalGeneration``, with the same module paths
    (``model.audio_tower``, ``model.multi_modal_projector``) and ``config``, without the LLM."""

    def __init__(self, config):
        from transformers import AutoModel
        from transformers.initialization import no_init_weights
        from transformers.models.fun_asr_nano.modeling_fun_asr_nano import FunAsrNanoMultiModalProjector

        super().__init__()
        self.config = config
        self.model = torch.nn.Module()
        with no_init_weights():  # every tensor is overwritten by the checkpoint right after
            self.model.audio_tower = AutoModel.from_config(config.audio_config)
            self.model.multi_modal_projector = FunAsrNanoMultiModalProjector(config)


def is_gguf_folder(names: set[str]) -> bool:
    """Whether a folder with these file names is in the GGUF layout."""
    return "config.json" in names and AUDIO_WEIGHTS in names and any(n.endswith(".gguf") for n in names)


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
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, FunAsrNanoConfig

    from .checkpoint import _raise_on_key_problems

    try:
        config = FunAsrNanoConfig.from_pretrained(path)
    except Exception as error:
        raise CheckpointError(f"{path}/config.json is not a Fun-ASR-Nano config: {error}") from error
    model = AudioModel(config)
    try:
        stored = load_file(os.path.join(path, AUDIO_WEIGHTS))
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"{path}/{AUDIO_WEIGHTS} cannot be read: {error}") from error
    expected = {k: v.shape for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    mismatched = [f"{k}: checkpoint {tuple(v.shape)}, model {tuple(expected[k])}"
                  for k, v in stored.items() if k in expected and tuple(v.shape) != tuple(expected[k])]
    _raise_on_key_problems(missing, unexpected, mismatched, f"{path}/{AUDIO_WEIGHTS}")
    model.load_state_dict(stored, assign=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as error:
        raise CheckpointError(f"{path}: cannot load the tokenizer: {error}") from error
    return model, tokenizer, config
