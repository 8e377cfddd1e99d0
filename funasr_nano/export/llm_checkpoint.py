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

def llm_state_dict(model) -> dict[str, torch.Tensor]:
    """The LLM's tensors of a ``FunAsrNanoForConditionalGeneration`` under ``*ForCausalLM``'s names
    (``model.layers.0.self_attn.q_proj.weight``, ..., ``lm_head.weight``, also when tied), not copied.

    Raises:
        CheckpointError: no LLM in torch (a GGUF-layout model).
        ValueError: the LLM still holds LoRA layers (merge them first).
    """
    language_model = getattr(getattr(model, "model", None), "language_model", None)
    if language_model is None:
        raise CheckpointError("the model holds no LLM weights in torch (a GGUF-layout folder?); load a checkpoint "
                              "in the official or transformers layout")
    names = [name for name, _ in language_model.named_parameters()] + list(language_model.state_dict())
    if any("lora_" in name or "base_layer" in name for name in names):
        raise ValueError("the LLM holds LoRA layers; merge the LoRA adapter before exporting to GGUF: "
                         "funasr-nano lora merge")
    state = {f"model.{name}": tensor for name, tensor in language_model.state_dict().items()}
    state["lm_head.weight"] = model.lm_head.weight
    return state


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
    state = llm_state_dict(model)
    if getattr(model.config.text_config, "tie_word_embeddings", False):
        del state["lm_head.weight"]  # not written, as save_pretrained does for tied weights
    state = {name: tensor.detach().to(dtype or tensor.dtype).contiguous().clone() for name, tensor in state.items()}
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
