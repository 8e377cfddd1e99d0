"""A peft LoRA adapter of the speech model's LLM as a GGUF LoRA file, for llama.cpp.

llama.cpp loads such a file beside its base GGUF at run time (``llama_adapter_lora_init``, ``llama-cli
--lora``) and applies ``W x + (alpha / r) * B (A x)`` to every adapted projection without merging. The
format is what llama.cpp's ``convert_lora_to_gguf.py`` writes and ``src/llama-adapter.cpp`` reads:

* metadata ``general.architecture`` (the base model's, e.g. ``qwen3``; llama.cpp refuses an adapter of
  another architecture), ``general.type = "adapter"``, ``adapter.type = "lora"`` and
  ``adapter.lora.alpha`` (peft's ``lora_alpha``; llama.cpp scales by ``alpha / r`` with ``r`` read from
  the tensors, so per-module ranks need no extra key);
* per adapted base tensor ``<base>.weight`` two tensors ``<base>.weight.lora_a`` and
  ``<base>.weight.lora_b`` holding peft's ``lora_A.weight`` ``(r, in)`` and ``lora_B.weight``
  ``(out, r)`` as they are (GGUF dims ``[in, r]`` and ``[r, out]``: llama.cpp checks ``a.ne[0] ==
  W.ne[0]``, ``b.ne[1] == W.ne[1]`` and ``a.ne[1] == b.ne[0]``).

Base names come from the same explicit key map as the base model's export
(:mod:`funasr_nano.export.gguf_architectures`): peft's ``base_model.model.layers.3.self_attn.q_proj``
(an adapter of the speech model's LLM; ``base_model.model.model.layers...`` for one of a plain causal
LM) is the LLM's ``model.layers.3.self_attn.q_proj.weight``, llama.cpp's ``blk.3.attn_q.weight``. Where
the base export rearranges a projection's rows (Llama's q/k RoPE pairs), ``lora_b`` gets the same row
permutation, since ``P (B A) = (P B) A``; ``lora_a`` is unchanged.

Only what peft's ``LoraConfig`` defaults to is converted (plain LoRA, ``bias="none"``, one
``lora_alpha``); :func:`funasr_nano.models.lora.read_adapter_settings` refuses the rest.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from ..errors import CheckpointError
from ..models.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PEFT_PREFIX, read_adapter_settings
from .gguf import gguf_writer, import_gguf
from .gguf_architectures import architecture_for

logger = logging.getLogger(__name__)

# GGML types an adapter is written in (2-D tensors)
LORA_TYPES = ("f32", "f16")
LORA_SUFFIXES = {"lora_A": "lora_a", "lora_B": "lora_b"}  # peft -> llama.cpp (llama-adapter.cpp)


def _adapter_options(folder: str) -> dict[str, Any]:
    import json

    with open(os.path.join(folder, ADAPTER_CONFIG), encoding="utf-8") as f:
        return json.load(f)


def lora_tensors(adapter_dir: str | os.PathLike, text_config) -> dict[str, torch.Tensor]:
    """llama.cpp name -> tensor of a peft adapter folder for an LLM with ``text_config``, every key
    mapped and every shape checked against the base tensor it adapts.

    Raises:
        CheckpointError: not an adapter folder, options llama.cpp cannot express (rsLoRA, DoRA, a
            bias, per-module ``alpha_pattern``), keys of modules the base GGUF has no tensor for
            (e.g. the audio encoder's, or an embedding LoRA), or shapes that do not fit the LLM
            (an adapter trained for another base model) -- each listed by name.
    """
    from safetensors.torch import load_file

    from ..models.weights import raise_on_key_problems

    folder = os.fspath(adapter_dir)
    settings = read_adapter_settings(folder)  # refuses rsLoRA, DoRA, biases, regex targets
    options = _adapter_options(folder)
    if options.get("alpha_pattern"):
        raise CheckpointError(f"{folder}/{ADAPTER_CONFIG}: alpha_pattern (a lora_alpha per module) is not supported "
                              "by llama.cpp's GGUF LoRA, which holds one adapter.lora.alpha")
    architecture = architecture_for(text_config)
    mapping = architecture.tensor_map()
    weights_path = os.path.join(folder, ADAPTER_WEIGHTS)
    stored = load_file(weights_path)
    tensors: dict[str, torch.Tensor] = {}
    unmapped, mismatched, pairs = [], [], {}
    for key, tensor in stored.items():
        stem, dot, suffix = key.rpartition(".lora_")
        side = "lora_" + suffix.removesuffix(".weight") if dot else ""
        if not key.startswith(PEFT_PREFIX) or side not in LORA_SUFFIXES or not suffix.endswith(".weight"):
            unmapped.append(key)
            continue
        # the *ForCausalLM name: peft wraps the speech model's LLM (base_model.model.layers...) or a
        # causal LM (base_model.model.model.layers...)
        inner = stem[len(PEFT_PREFIX):]
        base_name = (inner if inner.startswith("model.") else "model." + inner) + ".weight"
        if base_name not in mapping or len(mapping[base_name][1]) != 2 or base_name == "model.embed_tokens.weight":
            unmapped.append(key)
            continue
        gguf_name, (rows, cols) = mapping[base_name]
        pairs.setdefault(base_name, {})[side] = (key, tensor)
        if tensor.ndim != 2 or (side == "lora_A" and tensor.shape[1] != cols) or (side == "lora_B" and tensor.shape[0] != rows):
            mismatched.append(f"{key}: {tuple(tensor.shape)}, the LLM's {base_name} is ({rows}, {cols})")
            continue
        data = tensor.float()
        if side == "lora_B":  # the base export's row rearrangement, if any (Llama's q/k)
            data = architecture.convert_tensor(base_name, data)
        tensors[f"{gguf_name}.{LORA_SUFFIXES[side]}"] = data.contiguous()
    if unmapped:
        shown = ", ".join(unmapped[:8]) + (f", ... ({len(unmapped)} in all)" if len(unmapped) > 8 else "")
        raise CheckpointError(f"{weights_path}: LoRA tensors of modules llama.cpp's {architecture.arch_string} "
                              f"has no tensor for: {shown}; only the LLM's linear projections "
                              f"({', '.join(sorted({n.split('.')[-2] for n in mapping if '.layers.' in n and 'norm' not in n}))}) "
                              "can be adapted on the llama.cpp engine")
    half = [f"{pair[side][0] if side in pair else base}: no {other}" for base, pair in pairs.items()
            for side, other in (("lora_A", "lora_B"), ("lora_B", "lora_A")) if side in pair and other not in pair]
    ranks = [f"{base}: lora_A {tuple(p['lora_A'][1].shape)} and lora_B {tuple(p['lora_B'][1].shape)} differ in r"
             for base, p in pairs.items() if len(p) == 2 and p["lora_A"][1].shape[0] != p["lora_B"][1].shape[-1]]
    raise_on_key_problems(half, [], mismatched + ranks, weights_path)
    if not tensors:
        raise CheckpointError(f"{weights_path}: the adapter holds no LoRA tensors")
    logger.debug("LoRA %s: %d tensors (r=%d, alpha=%s)", folder, len(tensors), settings.r, settings.lora_alpha)
    return tensors


def write_lora_gguf(adapter_dir: str | os.PathLike, text_config, path: str | os.PathLike, out_type: str = "f32", *,
                    name: str | None = None) -> str:
    """Write a peft LoRA adapter of an LLM with ``text_config`` (the speech model's
    ``config.text_config``, or a causal LLM's config) as a GGUF LoRA file llama.cpp loads beside the
    base model's GGUF.

    Args:
        adapter_dir: peft adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``, e.g.
            ``funasr-nano train``'s ``lora/``).
        text_config: the base LLM's transformers config (architecture, sizes).
        path: the ``.gguf`` file to write (replaced atomically).
        out_type: ``f32`` (exact: the llama.cpp engine then gives the transformers engine's tokens) or
            ``f16`` (half the size).
        name: ``general.name`` (default: the adapter folder's name).

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: an unknown ``out_type``.
        CheckpointError: as :func:`lora_tensors`.
    """
    if out_type not in LORA_TYPES:
        raise ValueError(f"unknown GGUF LoRA type {out_type!r}; use one of {', '.join(LORA_TYPES)}")
    gguf = import_gguf()
    settings = read_adapter_settings(os.fspath(adapter_dir))
    tensors = lora_tensors(adapter_dir, text_config)
    architecture = architecture_for(text_config)
    path = os.fspath(path)
    with gguf_writer(path, architecture.arch_string) as writer:
        writer.add_name(name or os.path.basename(os.path.normpath(os.fspath(adapter_dir))))
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(settings.lora_alpha))
        file_type = gguf.LlamaFileType.ALL_F32 if out_type == "f32" else gguf.LlamaFileType.MOSTLY_F16
        writer.add_file_type(int(file_type))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for gguf_name, tensor in tensors.items():
            data = tensor.numpy()
            writer.add_tensor(gguf_name, data if out_type == "f32" else data.astype("float16"))
    logger.info("wrote GGUF LoRA %s (%s, %d tensors, r=%d, alpha=%s)", path, architecture.arch_string, len(tensors),
                settings.r, settings.lora_alpha)
    return path


def check_lora_gguf(path: str | os.PathLike, architecture: str | None = None) -> dict[str, Any]:
    """Check that ``path`` is a complete GGUF LoRA adapter (``general.type = adapter``, ``adapter.type =
    lora``) for ``architecture`` (the base GGUF's ``general.architecture``; ``None``: any).

    Returns:
        the file's scalar metadata.

    Raises:
        CheckpointError: a missing or corrupt file, a GGUF that is not a LoRA adapter (e.g. a model),
            or an adapter of another architecture.
    """
    from .gguf import check_gguf_file

    gguf = import_gguf()
    path = os.fspath(path)
    metadata = check_gguf_file(path)
    kind = metadata.get(gguf.Keys.General.TYPE)
    if kind != gguf.GGUFType.ADAPTER or metadata.get(gguf.Keys.Adapter.TYPE) != "lora":
        raise CheckpointError(f"{path}: not a GGUF LoRA adapter (general.type {kind!r}, adapter.type "
                              f"{metadata.get(gguf.Keys.Adapter.TYPE)!r}); write one with funasr-nano export gguf-lora")
    found = metadata.get(gguf.Keys.General.ARCHITECTURE)
    if architecture is not None and found != architecture:
        raise CheckpointError(f"{path}: a LoRA adapter for a {found!r} LLM, but the base model is {architecture!r}")
    return metadata
