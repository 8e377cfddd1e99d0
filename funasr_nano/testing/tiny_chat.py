"""Tiny random chat LLMs in the transformers layout (``config.json`` + ``model.safetensors`` + tokenizer with a
chat template), for the cascade-translator tests: a Qwen3 (Qwen's ChatML template with the
``enable_thinking`` switch of Qwen3's own template) and a Llama (Llama 3's header/``<|eot_id|>`` template,
Llama 3's pre-tokenizer split pattern, ``ignore_merges`` as Llama 3's tokenizer.json).

The tokenizers are byte-level BPE learned from a few sentences (so merges are exercised), with the special
tokens of each family; weights are random (``init_std`` larger than usual so greedy decoding varies).
"""

from __future__ import annotations

import os

import torch

from ..models.chat import QWEN_ADDED_TOKENS, QWEN_SPECIAL_TOKENS

# Qwen3's chat template, reduced to user/assistant turns; the generation prompt is the real one's
# (Qwen/Qwen3-0.6B tokenizer_config.json): with enable_thinking=false an empty think block is written.
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)
# Llama 3.x Instruct's turn format (meta-llama/Llama-3.2-1B-Instruct), without the system-date preamble.
LLAMA3_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
LLAMA3_SPECIAL_TOKENS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                         "<|eot_id|>")
FAMILIES = ("qwen3", "llama")
CORPUS = (
    "Translate the following Chinese text into English. Reply with the English translation only.",
    "The weather is nice today, and we are going to the park at 10 o'clock.",
    "今天天气很好，我们十点去公园。", "欢迎来到滨海新区。", "Hello, how are you? I am fine, thank you.",
    "Good morning! The meeting starts at 9:30 in room 204.",
)


def _tokenizer(family: str, vocab_size: int = 420):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from ..export.gguf import LLAMA3_SPLIT_PATTERN, QWEN2_SPLIT_PATTERN

    pattern = QWEN2_SPLIT_PATTERN if family == "qwen3" else LLAMA3_SPLIT_PATTERN
    tokenizer = Tokenizer(models.BPE(ignore_merges=family == "llama"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tokenizer.train_from_iterator(CORPUS * 4, trainer=trainer)
    tokenizer.decoder = decoders.ByteLevel()
    if family == "qwen3":
        tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN_ADDED_TOKENS])
        return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                       chat_template=QWEN3_CHAT_TEMPLATE, clean_up_tokenization_spaces=False)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in LLAMA3_SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   chat_template=LLAMA3_CHAT_TEMPLATE, clean_up_tokenization_spaces=False)


def build_tiny_chat_llm(family: str = "qwen3", seed: int = 0, init_std: float = 0.2):
    """``(model, tokenizer)``: a random ``Qwen3ForCausalLM`` or ``LlamaForCausalLM`` (hidden 64, 2 layers,
    4 query / 2 KV heads of 16 dims) with its tokenizer."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen3Config

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, not {family!r}")
    tokenizer = _tokenizer(family)
    sizes = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
                 rms_norm_eps=1e-6, eos_token_id=tokenizer.eos_token_id)
    if family == "qwen3":
        config = Qwen3Config(**sizes, tie_word_embeddings=True, bos_token_id=tokenizer.pad_token_id)
        config.architectures = ["Qwen3ForCausalLM"]
    else:
        config = LlamaConfig(**sizes, tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                             rope_theta=500000.0)
        config.architectures = ["LlamaForCausalLM"]
    model = AutoModelForCausalLM.from_config(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("norm.weight"):
                tensor.copy_(1.0 + 0.1 * torch.randn(tensor.shape, generator=generator))
            elif tensor.is_floating_point():
                tensor.copy_(init_std * torch.randn(tensor.shape, generator=generator))
    model.tie_weights()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.eval(), tokenizer


def write_tiny_chat_llm(path: str | os.PathLike, family: str = "qwen3", seed: int = 0) -> str:
    """Write a random chat LLM of ``family`` (``"qwen3"`` or ``"llama"``) to ``path`` in the transformers
    layout; returns ``path``."""
    model, tokenizer = build_tiny_chat_llm(family, seed)
    path = os.fspath(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
