"""Tiny random Fun-ASR-Nano checkpoints, written in the real folder layouts.

No model hub is reachable on our machines, so tests, examples and benchmarks run on checkpoints this
module writes: the real architecture (SAN-M encoder, adaptor, Qwen3 LLM) at any size, random weights,
and a byte-level BPE tokenizer that carries Qwen's special tokens and a ChatML chat template. Both the
official FunASR layout and the transformers layout are written, so the loading code is exercised on the
same files a user downloads.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterable

import torch
import yaml

from ..models.fun_asr_nano.checkpoint import hf_to_official_state_dict

# Qwen2/Qwen3's pre-tokenizer split pattern (tokenizer.json of Qwen/Qwen3-0.6B).
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen's special tokens, in Qwen's order (ids 151643... in the real vocabulary).
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
QWEN_ADDED_TOKENS = ("<think>", "</think>")  # added, not special (Qwen3 keeps them in decoded text)
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


# CJK unified ideographs (with extension A and the compatibility block): one pre-token per character
# when a tokenizer is trained with ``cjk_chars=True``.
CJK_CHAR_PATTERN = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"


def _qwen_pre_tokenizer(cjk_chars: bool = False):
    from tokenizers import Regex, pre_tokenizers

    steps = [pre_tokenizers.Split(Regex(CJK_CHAR_PATTERN), behavior="isolated", invert=False)] if cjk_chars else []
    return pre_tokenizers.Sequence(steps + [
        pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def _with_qwen_specials(tokenizer):
    """Add Qwen's special and added tokens to a ``tokenizers.Tokenizer`` and wrap it as a
    ``transformers.PreTrainedTokenizerFast`` with the ChatML template."""
    from tokenizers import AddedToken, decoders
    from transformers import PreTrainedTokenizerFast

    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN_ADDED_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE, model_max_length=32768, clean_up_tokenization_spaces=False,
    )


def build_tokenizer():
    """A byte-level BPE tokenizer with Qwen's pre-tokenizer, special tokens and a ChatML template.

    The vocabulary is the 256 byte symbols (no merges) followed by the special tokens, so any text
    round-trips. Returns a ``transformers.PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = _qwen_pre_tokenizer()
    return _with_qwen_specials(tokenizer)


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2, cjk_chars: bool = False):
    """A compact byte-level BPE tokenizer learned from ``texts``: the same pre-tokenizer, special tokens
    and ChatML template as :func:`build_tokenizer` (and as Qwen's), with ``vocab_size`` entries before
    the special tokens (256 byte symbols + merges). Any text still round-trips (byte fallback).

    ``cjk_chars=True`` first isolates every CJK ideograph, so no merge spans two Chinese characters: a
    frequent character is one token, a rare one its UTF-8 bytes. Text then has about one token per
    spoken syllable, which suits a small model trained from scratch with a CTC loss (Qwen's own
    tokenizer merges frequent words). Returns a ``transformers.PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = _qwen_pre_tokenizer(cjk_chars)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return _with_qwen_specials(tokenizer)


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    """Sizes of a random checkpoint. The defaults make a ~0.3 M-parameter model; :meth:`full_size`
    gives the real Fun-ASR-Nano-2512 architecture (0.8 B parameters)."""

    encoder_dim: int = 32
    encoder_heads: int = 4
    encoder_ffn: int = 64
    encoder_blocks: int = 4  # official num_blocks: encoders0 + (num_blocks - 1) encoders
    encoder_tp_blocks: int = 2
    adaptor_ffn: int = 48
    adaptor_heads: int = 8
    adaptor_layers: int = 2
    llm_dim: int = 64
    llm_layers: int = 2
    llm_heads: int = 4
    llm_kv_heads: int = 2
    llm_head_dim: int = 16
    llm_ffn: int = 128
    vocab_size: int | None = None  # None: exactly the tokenizer's size
    use_low_frame_rate: bool = True
    init_std: float = 0.2  # larger than usual so random models produce varied tokens

    @classmethod
    def full_size(cls) -> "TinyConfig":
        """Fun-ASR-Nano-2512: 70-block SAN-M encoder (50 + 20), 2-block adaptor, Qwen3-0.6B."""
        return cls(encoder_dim=512, encoder_heads=4, encoder_ffn=2048, encoder_blocks=50, encoder_tp_blocks=20,
                   adaptor_ffn=2048, adaptor_heads=8, adaptor_layers=2, llm_dim=1024, llm_layers=28, llm_heads=16,
                   llm_kv_heads=8, llm_head_dim=128, llm_ffn=3072, vocab_size=151936, init_std=0.02)


def llm_config_dict(config: TinyConfig, tokenizer) -> dict:
    """The LLM's ``config.json`` (Qwen3)."""
    from transformers import Qwen3Config

    vocab_size = config.vocab_size or len(tokenizer)
    qwen = Qwen3Config(
        vocab_size=vocab_size, hidden_size=config.llm_dim, intermediate_size=config.llm_ffn,
        num_hidden_layers=config.llm_layers, num_attention_heads=config.llm_heads,
        num_key_value_heads=config.llm_kv_heads, head_dim=config.llm_head_dim, max_position_embeddings=40960,
        tie_word_embeddings=True, rms_norm_eps=1e-6,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
    )
    qwen.architectures = ["Qwen3ForCausalLM"]
    return qwen.to_dict()


def official_config_yaml(config: TinyConfig, llm_dir: str = "Qwen3-0.6B") -> dict:
    """An official ``config.yaml`` (the structure of Fun-ASR-Nano-2512's) for ``config``."""
    return {
        "model": "FunASRNano",
        "model_conf": {"lsm_weight": 0.1, "length_normalized_loss": True},
        "audio_encoder": "SenseVoiceEncoderSmall",
        "audio_encoder_conf": {
            "output_size": config.encoder_dim, "attention_heads": config.encoder_heads,
            "linear_units": config.encoder_ffn, "num_blocks": config.encoder_blocks,
            "tp_blocks": config.encoder_tp_blocks, "dropout_rate": 0.1, "positional_dropout_rate": 0.1,
            "attention_dropout_rate": 0.1, "input_layer": "pe", "pos_enc_class": "SinusoidalPositionEncoder",
            "normalize_before": True, "kernel_size": 11, "sanm_shfit": 0, "selfattention_layer_type": "sanm",
            "freeze": True,
        },
        "llm": "Qwen3-0.6b",
        "llm_conf": {"hub": "hf", "freeze": True, "llm_dtype": "fp32", "init_param_path": llm_dir,
                     "use_lora": False},
        "audio_adaptor": "Transformer",
        "audio_adaptor_conf": {
            "downsample_rate": 1, "use_low_frame_rate": config.use_low_frame_rate, "ffn_dim": config.adaptor_ffn,
            "llm_dim": config.llm_dim, "encoder_dim": config.encoder_dim, "n_layer": config.adaptor_layers,
            "attention_heads": config.adaptor_heads, "freeze": True,
        },
        "frontend": "WavFrontend",
        "frontend_conf": {"fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25, "frame_shift": 10,
                          "lfr_m": 7, "lfr_n": 6, "cmvn_file": None, "dither": 0.0},
        "tokenizer": "HuggingfaceTokenizer",
        "tokenizer_conf": {"init_param_path": llm_dir},
    }


def build_random_model(config: TinyConfig, seed: int = 0, tokenizer=None):
    """``(FunAsrNanoForConditionalGeneration, tokenizer, official config.yaml dict)`` with random
    weights drawn from ``seed``; ``tokenizer`` defaults to :func:`build_tokenizer`'s."""
    from ..models.fun_asr_nano.checkpoint import hf_config_from_official, _frontend_from_yaml, _new_model

    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    cfg = official_config_yaml(config)
    hf_config = hf_config_from_official(cfg, llm_config_dict(config, tokenizer), _frontend_from_yaml(cfg))
    hf_config.audio_token_id = tokenizer.convert_tokens_to_ids("<|object_ref_start|>")
    generator = torch.Generator().manual_seed(seed)
    model = _new_model(hf_config)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                tensor.copy_(1.0 + 0.1 * torch.randn(tensor.shape, generator=generator))
            elif tensor.is_floating_point() and "positional_embedding" not in name and "rotary" not in name:
                tensor.copy_(config.init_std * torch.randn(tensor.shape, generator=generator))
    model.tie_weights()
    return model.eval(), tokenizer, cfg


def write_official(path: str, model, tokenizer, cfg: dict) -> None:
    """Write ``model`` in the official FunASR layout: config.yaml, configuration.json, model.pt
    (``{"state_dict": ...}``) and the LLM folder with its config.json and tokenizer."""
    os.makedirs(path, exist_ok=True)
    llm_dir = os.path.join(path, cfg["llm_conf"]["init_param_path"])
    os.makedirs(llm_dir, exist_ok=True)
    with open(os.path.join(path, "config.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, allow_unicode=True, sort_keys=False)
    with open(os.path.join(path, "configuration.json"), "w", encoding="utf-8") as f:
        json.dump({"framework": "pytorch", "task": "auto-speech-recognition", "model": {"type": "funasr"},
                   "file_path_metas": {"init_param": "model.pt", "config": "config.yaml",
                                       "tokenizer_conf": {"init_param_path": cfg["tokenizer_conf"]["init_param_path"]},
                                       "llm_conf": {"init_param_path": cfg["llm_conf"]["init_param_path"]}}}, f, indent=2)
    state = hf_to_official_state_dict(
        {k: v.detach().clone() for k, v in model.state_dict().items()}, cfg["audio_encoder_conf"]["num_blocks"]
    )
    torch.save({"state_dict": state}, os.path.join(path, "model.pt"))
    text = model.config.text_config.to_dict()
    text["architectures"] = ["Qwen3ForCausalLM"]
    with open(os.path.join(llm_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(text, f, indent=2)
    tokenizer.save_pretrained(llm_dir)


def write_hf(path: str, model, tokenizer) -> None:
    """Write ``model`` in the transformers layout (config.json, model.safetensors, tokenizer)."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def write_tiny_checkpoint(path: str, layout: str = "official", config: TinyConfig = TinyConfig(), seed: int = 0) -> str:
    """Write a random checkpoint of ``config``'s size to ``path`` in ``layout`` (``"official"`` or
    ``"hf"``); the same ``seed`` gives the same weights in both layouts. Returns ``path``."""
    if layout not in ("official", "hf"):
        raise ValueError(f"layout must be 'official' or 'hf', not {layout!r}")
    model, tokenizer, cfg = build_random_model(config, seed)
    if layout == "official":
        write_official(path, model, tokenizer, cfg)
    else:
        write_hf(path, model, tokenizer)
    return path
