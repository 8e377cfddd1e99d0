"""The LLM of a speech model on its own, as a transformers causal-LM checkpoint folder (``config.json`` with
``architectures: [Qwen3ForCausalLM]``, ``model.safetensors``, tokenizer): what serving engines that load an
HF checkpoint (vLLM) read.

Key map: the speech model's ``model.language_model.*`` -> ``model.*``; ``lm_head.weight`` -> ``lm_head.weight``
unless the LLM ties it to the input embeddings (Qwen3-0.6B does: then it is not written, as transformers'
``save_pretrained`` does for tied weights).
"""

from __future__ import annotations

import json
import logging
import os

import torch

from ..errors import CheckpointError

logger = logging.getLogger(__name__)

LLM_PREFIX = "model.language_model."


def llm_state_dict(model, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The causal LM's tensors of a ``FunAsrNanoForConditionalGeneration`` under ``*ForCausalLM`` names.

    Raises:
        CheckpointError: no LLM tensors (e.g. a GGUF-layout model, whose LLM is not in torch).
    """
    text_config = model.config.text_config
    tied = bool(getattr(text_config, "tie_word_embeddings", False))
    state = {}
    for name, tensor in model.state_dict().items():
        if name.startswith(LLM_PREFIX):
            state["model." + name[len(LLM_PREFIX):]] = tensor
        elif name == "lm_head.weight" and not tied:
            state[name] = tensor
    if "model.embed_tokens.weight" not in state:
        raise CheckpointError("the model holds no LLM weights in torch (a GGUF-layout folder?); load a checkpoint "
                              "in the official or transformers layout")
    return {name: tensor.detach().to(dtype or tensor.dtype).contiguous().clone() for name, tensor in state.items()}


def write_llm_checkpoint(model, tokenizer, out_dir: str | os.PathLike, dtype: torch.dtype | None = None) -> str:
    """Write the LLM of ``model`` (a ``FunAsrNanoForConditionalGeneration``) to ``out_dir`` as a
    transformers causal-LM checkpoint; ``dtype`` converts the weights (default: as loaded).

    Returns:
        ``out_dir``.

    Raises:
        CheckpointError: the model has no LLM weights in torch.
    """
    from safetensors.torch import save_file

    out_dir = os.fspath(out_dir)
    state = llm_state_dict(model, dtype)
    os.makedirs(out_dir, exist_ok=True)
    config = model.config.text_config.to_dict()
    config["architectures"] = [config.get("architectures", [None])[0] or "Qwen3ForCausalLM"]
    if dtype is not None:
        config["torch_dtype"] = config["dtype"] = str(dtype).removeprefix("torch.")
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(out_dir)
    logger.info("wrote the LLM (%d tensors) to %s", len(state), out_dir)
    return out_dir
