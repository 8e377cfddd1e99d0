"""Qwen3-ASR's LLM (the "thinker" text model) as a standalone causal LM.

A Qwen3-ASR checkpoint holds an audio encoder (AuT) and a Qwen3 text LLM with q/k norms whose RoPE is
Qwen3-VL's interleaved multimodal RoPE (``mrope_section``, e.g. ``[24, 20, 20]`` for head_dim 128).
This module reads the LLM out of the checkpoint folder, in either layout, by an explicit key map:

* official (``Qwen/Qwen3-ASR-0.6B``): the LLM is ``thinker.model.*`` and ``thinker.lm_head.weight``; the
  audio tower ``thinker.audio_tower.*`` is left behind;
* transformers (``-hf``): the LLM is ``model.language_model.*`` and ``lm_head.weight``; ``model.audio_tower.*``
  and ``model.multi_modal_projector.*`` are left behind;

and maps them to ``Qwen3ForCausalLM``'s names (``model.*``, ``lm_head.weight``), every shape checked
against the sizes in the checkpoint's own config; a tensor that is neither mapped nor audio is an
error, as is a missing or mis-shaped one (:class:`~funasr_nano.errors.CheckpointError` lists them).
Tied embeddings (``tie_word_embeddings``): ``lm_head.weight`` is a clone of ``embed_tokens`` (safetensors
refuses tensors that share memory); a stored ``lm_head`` that differs from the embedding is refused.

The written config is a plain ``qwen3`` config (``AutoModelForCausalLM.from_pretrained`` loads it
without custom code) with the sizes of the source, plus ``mrope_section`` / ``mrope_interleaved``
recorded for the GGUF export (:mod:`funasr_nano.export.thinker_gguf`). Plain RoPE is exact here
because Qwen3-ASR gives every position (text and audio) the same index on all three MRoPE axes, and
interleaved MRoPE with equal axes is plain RoPE (``tests/test_thinker_export.py`` proves it).

Sources: the official config layout (``thinker_config.text_config``, ``rope_scaling.mrope_section``)
as in QwenLM/Qwen3-ASR ``qwen_asr/core/transformers_backend/configuration_qwen3_asr.py``; the -hf layout
as transformers' ``Qwen3ASRForConditionalGeneration`` saves it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Mapping

import torch

from ..errors import CheckpointError, InvalidOptionError
from ..models.weights import read_json_object

logger = logging.getLogger(__name__)

LAYOUTS = ("official", "hf")
# layout -> (prefix of the text model, name of the output head, prefixes of the tensors left behind)
_PREFIXES = {
    "official": ("thinker.model.", "thinker.lm_head.weight", ("thinker.audio_tower.",)),
    "hf": ("model.language_model.", "lm_head.weight", ("model.audio_tower.", "model.multi_modal_projector.")),
}
# Per-layer tensors of a Qwen3 decoder layer: name tail -> shape as a function of the sizes
_LAYER_TENSORS = (
    ("input_layernorm.weight", lambda s: (s.hidden,)),
    ("self_attn.q_proj.weight", lambda s: (s.q_rows, s.hidden)),
    ("self_attn.k_proj.weight", lambda s: (s.kv_rows, s.hidden)),
    ("self_attn.v_proj.weight", lambda s: (s.kv_rows, s.hidden)),
    ("self_attn.q_norm.weight", lambda s: (s.head_dim,)),
    ("self_attn.k_norm.weight", lambda s: (s.head_dim,)),
    ("self_attn.o_proj.weight", lambda s: (s.hidden, s.q_rows)),
    ("post_attention_layernorm.weight", lambda s: (s.hidden,)),
    ("mlp.gate_proj.weight", lambda s: (s.ffn, s.hidden)),
    ("mlp.up_proj.weight", lambda s: (s.ffn, s.hidden)),
    ("mlp.down_proj.weight", lambda s: (s.hidden, s.ffn)),
)


@dataclasses.dataclass(frozen=True)
class ThinkerSource:
    """What the export reads from a Qwen3-ASR checkpoint folder.

    Attributes:
        path: the folder.
        layout: ``"official"`` (``config.json`` with ``thinker_config``) or ``"hf"`` (transformers'
            ``qwen3_asr`` config with ``text_config``).
        text_config: the LLM's config as stored (a dict).
        mrope_section: the interleaved MRoPE sections ``(t, h, w)`` in rotary pairs (they sum to
            ``head_dim / 2``), or ``None`` when the checkpoint does not record them (the -hf layout).
        mrope_interleaved: whether the sections are interleaved (Qwen3-VL) rather than contiguous.
        tie_word_embeddings: whether ``lm_head`` is the token embedding.
    """

    path: str
    layout: str
    text_config: Mapping[str, Any]
    mrope_section: tuple[int, ...] | None
    mrope_interleaved: bool
    tie_word_embeddings: bool


@dataclasses.dataclass(frozen=True)
class _Sizes:
    hidden: int
    ffn: int
    vocab: int
    layers: int
    head_dim: int
    q_rows: int
    kv_rows: int


def _rope_dict(text: Mapping[str, Any]) -> dict:
    """The RoPE settings of a text config, whichever key holds them (``rope_scaling`` in the official
    config, ``rope_parameters`` in transformers 5)."""
    merged: dict = {}
    for key in ("rope_scaling", "rope_parameters"):
        if isinstance(text.get(key), Mapping):
            merged.update(text[key])
    return merged


def read_source(path: str | os.PathLike) -> ThinkerSource:
    """Recognise a Qwen3-ASR checkpoint folder and read its LLM config.

    Raises:
        CheckpointError: no ``config.json``, or a config that is not Qwen3-ASR's (either layout).
    """
    path = os.path.abspath(os.fspath(path))
    config = read_json_object(os.path.join(path, "config.json"))
    if isinstance(config.get("thinker_config"), Mapping):
        layout, thinker = "official", config["thinker_config"]
        text = thinker.get("text_config")
        tie_default = thinker.get("tie_word_embeddings", config.get("tie_word_embeddings", False))
    elif config.get("model_type") == "qwen3_asr" and isinstance(config.get("text_config"), Mapping):
        layout, text = "hf", config["text_config"]
        tie_default = config.get("tie_word_embeddings", True)  # Qwen3ASRConfig's default
    else:
        raise CheckpointError(f"{path}/config.json is not a Qwen3-ASR config (no thinker_config, and model_type "
                              f"{config.get('model_type')!r} is not 'qwen3_asr')")
    if not isinstance(text, Mapping):
        raise CheckpointError(f"{path}/config.json has no text_config for the LLM")
    rope = _rope_dict(text)
    section = rope.get("mrope_section", text.get("mrope_section"))
    interleaved = bool(rope.get("mrope_interleaved", rope.get("interleaved", text.get("mrope_interleaved", False))))
    if section is not None:
        if not isinstance(section, (list, tuple)) or not all(isinstance(v, int) and v >= 0 for v in section):
            raise CheckpointError(f"{path}/config.json: mrope_section must be a list of non-negative integers, "
                                  f"got {section!r}")
        section = tuple(int(v) for v in section)
    tie = bool(text.get("tie_word_embeddings", tie_default))
    return ThinkerSource(path, layout, dict(text), section, interleaved, tie)


# The reference's Qwen3ASRTextConfig default (qwen_asr/core/transformers_backend/configuration_qwen3_asr.py),
# as funasr_nano.models.qwen3_asr.checkpoint also assumes for an official config without rope_theta.
OFFICIAL_DEFAULT_ROPE_THETA = 5000000.0


def _rope_theta(text: Mapping[str, Any], layout: str) -> float:
    theta = _rope_dict(text).get("rope_theta", text.get("rope_theta"))
    if theta is None:
        if layout == "official":
            return OFFICIAL_DEFAULT_ROPE_THETA
        raise CheckpointError("the LLM config has no rope_theta")
    return float(theta)


def thinker_config(source: ThinkerSource):
    """The exported LLM's config: a transformers ``Qwen3Config`` with the source's sizes, the default
    RoPE at the source's ``rope_theta``, and ``mrope_section`` / ``mrope_interleaved`` recorded.

    Raises:
        CheckpointError: a size is missing, the RoPE is scaled (only the default RoPE is exported), or
            the LLM has attention biases or a non-SiLU activation (Qwen3 has neither).
    """
    from transformers import Qwen3Config

    text = source.text_config
    required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    missing = [key for key in required if not isinstance(text.get(key), int)]
    if missing:
        raise CheckpointError(f"{source.path}/config.json: the LLM config lacks {', '.join(missing)}")
    rope_type = _rope_dict(text).get("rope_type", _rope_dict(text).get("type", "default"))
    problems = []
    if rope_type not in ("default", None):
        problems.append(f"rope_type {rope_type!r} (only the default RoPE is exported)")
    if text.get("attention_bias", False):
        problems.append("attention_bias=True")
    if text.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act={text.get('hidden_act')!r}")
    if problems:
        raise CheckpointError(f"{source.path}: the LLM is not a Qwen3 text model: " + "; ".join(problems))
    heads = int(text["num_attention_heads"])
    extra = {}
    if source.mrope_section is not None:
        extra = {"mrope_section": list(source.mrope_section), "mrope_interleaved": source.mrope_interleaved}
    eos = text.get("eos_token_id")
    config = Qwen3Config(
        vocab_size=int(text["vocab_size"]), hidden_size=int(text["hidden_size"]),
        intermediate_size=int(text["intermediate_size"]), num_hidden_layers=int(text["num_hidden_layers"]),
        num_attention_heads=heads, num_key_value_heads=int(text.get("num_key_value_heads") or heads),
        head_dim=int(text.get("head_dim") or int(text["hidden_size"]) // heads),
        max_position_embeddings=int(text.get("max_position_embeddings", 32768)),
        rms_norm_eps=float(text.get("rms_norm_eps", 1e-6)), hidden_act="silu", attention_bias=False,
        rope_parameters={"rope_type": "default", "rope_theta": _rope_theta(text, source.layout)},
        tie_word_embeddings=source.tie_word_embeddings,
        bos_token_id=text.get("bos_token_id"), eos_token_id=eos, pad_token_id=text.get("pad_token_id"),
        **extra,
    )
    config.architectures = ["Qwen3ForCausalLM"]
    return config


def _sizes(config) -> _Sizes:
    head_dim = int(config.head_dim)
    return _Sizes(hidden=int(config.hidden_size), ffn=int(config.intermediate_size), vocab=int(config.vocab_size),
                  layers=int(config.num_hidden_layers), head_dim=head_dim,
                  q_rows=int(config.num_attention_heads) * head_dim,
                  kv_rows=int(config.num_key_value_heads) * head_dim)


def thinker_key_map(config, layout: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Source name -> (``Qwen3ForCausalLM`` name, shape) for every LLM tensor of ``layout``.

    ``config``: the exported LLM's config (:func:`thinker_config`). The output head is listed even
    when tied (a tied checkpoint may omit it; see :func:`read_thinker_state`).
    """
    if layout not in _PREFIXES:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    prefix, head, _ = _PREFIXES[layout]
    s = _sizes(config)
    mapping = {
        f"{prefix}embed_tokens.weight": ("model.embed_tokens.weight", (s.vocab, s.hidden)),
        f"{prefix}norm.weight": ("model.norm.weight", (s.hidden,)),
        head: ("lm_head.weight", (s.vocab, s.hidden)),
    }
    for layer in range(s.layers):
        for tail, shape in _LAYER_TENSORS:
            mapping[f"{prefix}layers.{layer}.{tail}"] = (f"model.layers.{layer}.{tail}", shape(s))
    return mapping


def _weight_files(path: str) -> list[str]:
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        shards = sorted(set(read_json_object(index).get("weight_map", {}).values()))
        if not shards:
            raise CheckpointError(f"{index} lists no weight files")
        return [os.path.join(path, name) for name in shards]
    single = os.path.join(path, "model.safetensors")
    if os.path.isfile(single):
        return [single]
    raise CheckpointError(f"{path}: no model.safetensors (or model.safetensors.index.json)")


def read_thinker_state(source: ThinkerSource, config, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The LLM's tensors under ``Qwen3ForCausalLM``'s names, read from the source's safetensors files
    by :func:`thinker_key_map` (only these tensors are loaded; audio tensors are skipped unread).

    Args:
        dtype: convert floating-point tensors to this dtype (``None``: as stored).

    Raises:
        CheckpointError: missing, unexpected (neither LLM nor audio) or mis-shaped tensors, all listed
            by name; a tied checkpoint whose stored ``lm_head`` differs from its embedding.
    """
    from safetensors import SafetensorError, safe_open

    mapping = thinker_key_map(config, source.layout)
    _, head, audio_prefixes = _PREFIXES[source.layout]
    state: dict[str, torch.Tensor] = {}
    unexpected, mismatched = [], []
    for file in _weight_files(source.path):
        try:
            with safe_open(file, framework="pt") as f:
                for name in f.keys():
                    if name in mapping:
                        target, shape = mapping[name]
                        tensor = f.get_tensor(name)
                        if tuple(tensor.shape) != shape:
                            mismatched.append(f"{name}: checkpoint {tuple(tensor.shape)}, config {shape}")
                            continue
                        if dtype is not None and tensor.is_floating_point():
                            tensor = tensor.to(dtype)
                        state[target] = tensor
                    elif not name.startswith(audio_prefixes) and not name.endswith("rotary_emb.inv_freq"):
                        unexpected.append(name)
        except (OSError, SafetensorError) as error:
            raise CheckpointError(f"{file} cannot be read: {error}") from error
    missing = [name for name, (target, _) in mapping.items() if target not in state
               and not (name == head and source.tie_word_embeddings)]
    if missing or unexpected or mismatched:
        parts = [f"{title}: {', '.join(names[:20])}" + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
                 for title, names in (("missing", missing), ("unexpected", unexpected),
                                      ("shape mismatch", mismatched)) if names]
        raise CheckpointError(f"{source.path}: the LLM tensors do not match its config; " + "; ".join(parts))
    embedding = state["model.embed_tokens.weight"]
    if source.tie_word_embeddings:
        stored = state.get("lm_head.weight")
        if stored is not None and not torch.equal(stored, embedding):
            raise CheckpointError(f"{source.path}: tie_word_embeddings is set but {head} differs from the embedding")
        state["lm_head.weight"] = embedding.clone()  # safetensors refuses shared tensors
    return state


def load_tokenizer(source: ThinkerSource):
    """The source's tokenizer with the chat template the family uses
    (:func:`funasr_nano.models.qwen3_asr.checkpoint.chat_template`).

    Raises:
        CheckpointError: the tokenizer cannot be loaded.
    """
    from ..models.qwen3_asr.checkpoint import chat_template, load_tokenizer as load_family_tokenizer

    tokenizer = load_family_tokenizer(source.path)
    template = chat_template(source.path, tokenizer)
    if template is not None:
        tokenizer.chat_template = template
    else:
        logger.warning("%s has no chat template; the exported tokenizer has none either", source.path)
    return tokenizer


def export_thinker_hf(model_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                      dtype: torch.dtype | None = None) -> str:
    """``funasr-nano export hf``: write the LLM of the Qwen3-ASR checkpoint ``model_path`` (either
    layout) to ``out_dir`` as a standalone transformers causal LM: ``config.json`` (``qwen3``),
    ``model.safetensors`` (``model.*``, ``lm_head.weight``), ``generation_config.json`` and the
    tokenizer with its chat template.

    Args:
        dtype: the weights' dtype (``None``: as stored, e.g. bf16 for the released checkpoints).

    Returns:
        ``out_dir`` as a string.

    Raises:
        InvalidOptionError: ``out_dir`` is the source folder.
        CheckpointError: not a Qwen3-ASR checkpoint, or its LLM tensors do not match its config.
    """
    from safetensors.torch import save_file
    from transformers import GenerationConfig

    source = read_source(model_path)
    out_dir = os.path.abspath(os.fspath(out_dir))
    if out_dir == source.path:
        raise InvalidOptionError(f"{out_dir}: the output folder must not be the source checkpoint")
    config = thinker_config(source)
    state = read_thinker_state(source, config, dtype)
    tokenizer = load_tokenizer(source)
    os.makedirs(out_dir, exist_ok=True)
    if dtype is not None:
        config.dtype = dtype
    else:
        config.dtype = state["model.embed_tokens.weight"].dtype
    config.save_pretrained(out_dir)
    GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                     pad_token_id=config.pad_token_id, do_sample=False).save_pretrained(out_dir)
    tmp = os.path.join(out_dir, "model.safetensors.partial")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp, metadata={"format": "pt"})
    os.replace(tmp, os.path.join(out_dir, "model.safetensors"))
    tokenizer.save_pretrained(out_dir)
    logger.info("exported the %s-layout Qwen3-ASR LLM of %s to %s (%d tensors)", source.layout, source.path,
                out_dir, len(state))
    return out_dir
