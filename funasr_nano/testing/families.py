"""Random causal LLMs of several families, written as a Hugging Face model folder (``config.json``,
``model.safetensors``, tokenizer with the family's special tokens and chat format), for
``funasr-nano swap`` tests and benchmarks.

No model hub is reachable here, so the tokenizers are byte-level BPE vocabularies (256 byte symbols,
no merges, :func:`funasr_nano.training.tokenizer.build_tokenizer`'s pre-tokenizer) carrying each
family's special tokens and a chat template written here after the family's published format:

* ``qwen3``: ChatML with Qwen3's ``enable_thinking`` switch (``<think>\\n\\n</think>\\n\\n`` after the
  generation header when thinking is off);
* ``llama``: Llama 3 headers (``<|start_header_id|>role<|end_header_id|>\\n\\n ... <|eot_id|>``) after
  ``<|begin_of_text|>`` (without the date preamble of the 3.1+ templates);
* ``gemma2``: ``<bos><start_of_turn>user\\n ... <end_of_turn>\\n<start_of_turn>model\\n``; no system
  role (the template raises on one, as Gemma's does);
* ``deepseek_v2``: ``<｜begin▁of▁sentence｜>`` + system text + ``User: ...\\n\\nAssistant:``, the answer
  ended by ``<｜end▁of▁sentence｜>`` (no end-of-turn marker in the prompt itself).

Sizes: :func:`tiny_config` (tests, ~0.1 M parameters) and :func:`full_size_config` (the published
architectures, for benchmarks with random weights).
"""

from __future__ import annotations

import os

import torch

FAMILIES = ("qwen3", "llama", "gemma2", "deepseek_v2")

_QWEN3_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
    "{% endif %}"
)
_LLAMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
_GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
_DEEPSEEK_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\\n\\n' }}"
    "{% else %}{{ 'Assistant: ' + message['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# family -> (special tokens in id order, bos, eos (the instruct end of turn), pad, chat template)
_TOKENS = {
    "llama": (("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
               "<|reserved_special_token_0|>"), "<|begin_of_text|>", "<|eot_id|>", None, _LLAMA_TEMPLATE),
    "gemma2": (("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"), "<bos>", "<eos>", "<pad>",
               _GEMMA_TEMPLATE),
    "deepseek_v2": (("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"), "<｜begin▁of▁sentence｜>",
                    "<｜end▁of▁sentence｜>", "<｜end▁of▁sentence｜>", _DEEPSEEK_TEMPLATE),
}


def build_family_tokenizer(family: str, vocabulary=None):
    """A byte-level BPE tokenizer with ``family``'s special tokens, BOS/EOS/PAD and chat template.

    ``vocabulary``: a byte-level BPE tokenizer whose vocabulary and merges to use (e.g. the demo model's,
    learned on Chinese text, so prompts have realistic lengths); default: the 256 byte symbols only.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from ..training.tokenizer import build_tokenizer, qwen_pre_tokenizer

    _check(family)
    if family == "qwen3" and vocabulary is None:
        tokenizer = build_tokenizer()
        tokenizer.chat_template = _QWEN3_TEMPLATE
        return tokenizer
    if family == "qwen3":
        specials, bos, eos, pad, template = (), None, "<|im_end|>", "<|endoftext|>", _QWEN3_TEMPLATE
    else:
        specials, bos, eos, pad, template = _TOKENS[family]
    if vocabulary is not None:
        backend = Tokenizer.from_str(vocabulary.backend_tokenizer.to_str())
    else:
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        backend = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(sorted(alphabet))}, merges=[]))
        backend.pre_tokenizer = qwen_pre_tokenizer()
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos, pad_token=pad,
                                   chat_template=template, model_max_length=8192, clean_up_tokenization_spaces=False)


def _check(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; use one of {FAMILIES}")


def _ids(tokenizer, family: str) -> dict:
    bos = tokenizer.bos_token_id
    if family == "qwen3":
        return {"bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
                "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>")}
    ids = {"bos_token_id": bos, "eos_token_id": tokenizer.eos_token_id}
    if family == "llama":  # Llama 3 instruct: <|end_of_text|>, <|eot_id|>
        ids["eos_token_id"] = [tokenizer.convert_tokens_to_ids("<|end_of_text|>"), tokenizer.eos_token_id]
    if tokenizer.pad_token_id is not None:
        ids["pad_token_id"] = tokenizer.pad_token_id
    return ids


def tiny_config(family: str, vocab_size: int, hidden_size: int = 64):
    """A transformers config of ``family`` with 2 layers of ``hidden_size`` (DeepSeek-V2: one dense
    layer, then a mixture of 4 routed experts, 2 per token, plus 1 shared expert)."""
    from transformers import DeepseekV2Config, Gemma2Config, LlamaConfig, Qwen3Config

    _check(family)
    common = dict(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                  num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=4096)
    head_dim = hidden_size // 4
    if family == "qwen3":
        return Qwen3Config(**common, num_key_value_heads=2, head_dim=head_dim, tie_word_embeddings=True)
    if family == "llama":
        return LlamaConfig(**common, num_key_value_heads=2, tie_word_embeddings=True, rope_theta=500000.0)
    if family == "gemma2":
        return Gemma2Config(**common, num_key_value_heads=2, head_dim=head_dim, query_pre_attn_scalar=head_dim,
                            sliding_window=512, tie_word_embeddings=True)
    return DeepseekV2Config(**common, num_key_value_heads=4, moe_intermediate_size=hidden_size // 2,
                            n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2, first_k_dense_replace=1,
                            kv_lora_rank=16, q_lora_rank=None, qk_rope_head_dim=8, qk_nope_head_dim=8,
                            v_head_dim=head_dim, tie_word_embeddings=False)


# The published architectures (config.json of each model), for benchmarks with random weights.
FULL_SIZE = {
    "Qwen3-0.6B": ("qwen3", dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                                 num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
                                 rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)),
    "Qwen3-1.7B": ("qwen3", dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                                 num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
                                 rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)),
    "Qwen3-4B": ("qwen3", dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                               num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
                               rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)),
    "Llama-3.2-1B": ("llama", dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                                   num_attention_heads=32, num_key_value_heads=8, head_dim=64, vocab_size=128256,
                                   max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=True,
                                   rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                    "original_max_position_embeddings": 8192})),
    "Gemma-2-2B": ("gemma2", dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
                                  num_key_value_heads=4, head_dim=256, vocab_size=256000, max_position_embeddings=8192,
                                  query_pre_attn_scalar=256, sliding_window=4096, rms_norm_eps=1e-6,
                                  attn_logit_softcapping=50.0, final_logit_softcapping=30.0, tie_word_embeddings=True)),
}


def full_size_config(name: str):
    """``(family, transformers config)`` of a published LLM in :data:`FULL_SIZE`."""
    from transformers import AutoConfig

    if name not in FULL_SIZE:
        raise ValueError(f"unknown LLM {name!r}; use one of {sorted(FULL_SIZE)}")
    family, values = FULL_SIZE[name]
    return family, AutoConfig.for_model({"qwen3": "qwen3", "llama": "llama", "gemma2": "gemma2"}[family], **values)


def write_family_llm(path: str, family: str, config=None, *, seed: int = 0, std: float = 0.2,
                     dtype: torch.dtype = torch.float32, tokenizer=None) -> str:
    """Write a random ``*ForCausalLM`` of ``family`` (``config`` default: :func:`tiny_config`) with its
    tokenizer (default :func:`build_family_tokenizer`'s) to ``path``; weights ~ N(0, ``std``) (Gemma's
    embeddings ``std / sqrt(hidden)``), norms ~ 1 (Gemma's ``1 + weight`` norms: weight ~ 0).
    Returns ``path``."""
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    tokenizer = tokenizer if tokenizer is not None else build_family_tokenizer(family)
    config = config if config is not None else tiny_config(family, len(tokenizer))
    for key, value in _ids(tokenizer, family).items():
        setattr(config, key, value)
    config.dtype = dtype
    generator = torch.Generator().manual_seed(seed)
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or "rotary" in name or "inv_freq" in name:
                continue
            if name.endswith("norm.weight") or "layernorm" in name:
                fill = torch.zeros if family == "gemma2" else torch.ones
                tensor.copy_(fill(tensor.shape) + 0.05 * torch.randn(tensor.shape, generator=generator))
            elif name.endswith("bias"):
                tensor.zero_()
            else:
                # Gemma multiplies input embeddings by sqrt(hidden): drawn that much smaller, so the layers
                # are not drowned by the input (a tied random model would otherwise echo its last token)
                scale = config.hidden_size ** -0.5 if family == "gemma2" and "embed_tokens" in name else 1.0
                tensor.copy_(std * scale * torch.randn(tensor.shape, generator=generator))
    model.tie_weights()
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
