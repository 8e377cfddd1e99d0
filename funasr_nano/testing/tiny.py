"""Tiny random Fun-ASR-Nano checkpoints, written in the real folder layouts.

No model hub is reachable on our machines, so tests, examples and benchmarks run on checkpoints this
module writes: the real architecture (SAN-M encoder, adaptor, Qwen3 LLM) at any size, random weights,
and a byte-level BPE tokenizer that carries Qwen's special tokens and a ChatML chat template. Both the
official FunASR layout and the transformers layout are written, so the loading code is exercised on the
same files a user downloads.
"""

from __future__ import annotations

import dataclasses

import torch

from ..export.checkpoint import write_hf, write_official
from ..models.chat import AUDIO_PLACEHOLDER_TOKEN, QWEN_SPECIAL_TOKENS
from ..training.tokenizer import build_tokenizer


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
    # the CTC branch (official layout only): ctc_decoder (the adaptor architecture at the encoder's
    # width) + ctc.ctc_lo + a tiktoken CTC tokenizer (multilingual.tiktoken)
    ctc: bool = False
    ctc_ffn: int = 48
    ctc_layers: int = 2

    @classmethod
    def full_size(cls) -> "TinyConfig":
        """Fun-ASR-Nano-2512: 70-block SAN-M encoder (50 + 20), 2-block adaptor, Qwen3-0.6B."""
        return cls(encoder_dim=512, encoder_heads=4, encoder_ffn=2048, encoder_blocks=50, encoder_tp_blocks=20,
                   adaptor_ffn=2048, adaptor_heads=8, adaptor_layers=2, llm_dim=1024, llm_layers=28, llm_heads=16,
                   llm_kv_heads=8, llm_head_dim=128, llm_ffn=3072, vocab_size=151936, init_std=0.02,
                   ctc_ffn=2048, ctc_layers=5)


def llm_config_dict(config: TinyConfig, tokenizer) -> dict:
    """The LLM's ``config.json`` (Qwen3)."""
    from transformers import Qwen3Config

    vocab_size = config.vocab_size or len(tokenizer)
    qwen = Qwen3Config(
        vocab_size=vocab_size, hidden_size=config.llm_dim, intermediate_size=config.llm_ffn,
        num_hidden_layers=config.llm_layers, num_attention_heads=config.llm_heads,
        num_key_value_heads=config.llm_kv_heads, head_dim=config.llm_head_dim, max_position_embeddings=40960,
        tie_word_embeddings=True, rms_norm_eps=1e-6,
        bos_token_id=tokenizer.convert_tokens_to_ids(QWEN_SPECIAL_TOKENS[0]),
        eos_token_id=tokenizer.convert_tokens_to_ids(QWEN_SPECIAL_TOKENS[2]),
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


# The SenseVoice tokenizer's special tokens after its ordinary ranks (funasr's get_encoding: 105
# languages, 11 audio events, 4 emotions, 6 task tokens, 50 SPECIAL_TOKEN_i, 1501 timestamps, plus
# <|endoftext|> and <|startoftranscript|>): the blank, the last id, is the last of them.
CTC_SPECIAL_TOKENS = 1679
# Text whose characters get their own tokens in the tiny CTC tokenizer (so that, as in the real
# multilingual BPE, a CJK character is one token): the transcripts of tests/data/audio and a few words.
CTC_TOKENIZER_TEXT = ("我想问我在滨海新区有房欢迎大家来体验达摩院推出的语音识别模型，。？！、"
                      " the of and to in is it you that he was for on are with as hello world speech model")


def ctc_tokenizer_ranks(text: str = CTC_TOKENIZER_TEXT) -> list[bytes]:
    """The ordinary tokens of a tiny tiktoken BPE in rank order: the 256 bytes, then for each CJK
    character, English word (with its leading space) and the replacement character U+FFFD its
    byte prefixes, so that BPE merges reach them (one token per character or word)."""
    ranks = [bytes([b]) for b in range(256)]
    seen = set(ranks)
    pieces = [c for c in text if ord(c) > 127] + ["\ufffd"] + [" " + w for w in text.split() if w.isascii()]
    for piece in pieces:
        data = piece.encode("utf-8")
        for end in range(2, len(data) + 1):
            if data[:end] not in seen:
                seen.add(data[:end])
                ranks.append(data[:end])
    return ranks


def official_ctc_config(config: TinyConfig, num_ordinary: int) -> dict:
    """The CTC part of an official ``config.yaml`` (Fun-ASR-Nano-2512's keys: ``ctc_decoder``,
    ``ctc_decoder_conf``, ``ctc_conf``, ``dataset_conf.ctc_tokenizer*``), sized for ``config``;
    ``ctc_vocab_size`` is written because the tiny vocabulary is not the default 60515."""
    return {
        "ctc_decoder": "Transformer",
        "detach_ctc_decoder": True,
        "ctc_decoder_conf": {"downsample_rate": 1, "ffn_dim": config.ctc_ffn, "llm_dim": config.encoder_dim,
                             "encoder_dim": config.encoder_dim, "n_layer": config.ctc_layers, "freeze": False},
        "ctc_weight": 1.0,
        "ctc_vocab_size": num_ordinary + CTC_SPECIAL_TOKENS,
        "ctc_conf": {"dropout_rate": 0.0, "ctc_type": "builtin", "reduce": True, "ignore_nan_grad": True},
        "dataset_conf": {"ctc_tokenizer": "SenseVoiceTokenizer", "ctc_target_normalize": True,
                         "ctc_tokenizer_conf": {"vocab_path": None, "is_multilingual": True, "num_languages": 8749}},
    }


def _write_ctc_branch(path: str, config: TinyConfig, cfg: dict, seed: int) -> None:
    """Add a random CTC branch to an official-layout folder: tensors in model.pt, the CTC keys in
    config.yaml, multilingual.tiktoken, and its path in configuration.json's file_path_metas (where
    FunASR resolves it)."""
    import base64
    import json
    import os

    import yaml

    from ..models.fun_asr_nano.checkpoint import ctc_head_to_official_state_dict
    from ..models.fun_asr_nano.ctc import CTC_VOCAB_FILE, build_ctc_head

    ranks = ctc_tokenizer_ranks()
    ctc_cfg = official_ctc_config(config, len(ranks))
    head, _ = build_ctc_head(ctc_cfg, config.encoder_dim)
    generator = torch.Generator().manual_seed(seed + 7919)
    random = {}
    for name, tensor in head.state_dict().items():
        if name.endswith("norm.weight"):
            random[name] = 1.0 + 0.1 * torch.randn(tensor.shape, generator=generator)
        else:
            random[name] = config.init_std * torch.randn(tensor.shape, generator=generator)
    state = ctc_head_to_official_state_dict(random)
    model_pt = os.path.join(path, "model.pt")
    checkpoint = torch.load(model_pt, map_location="cpu", weights_only=True)
    checkpoint["state_dict"].update(state)
    torch.save(checkpoint, model_pt)
    with open(os.path.join(path, CTC_VOCAB_FILE), "w", encoding="utf-8") as f:
        f.writelines(f"{base64.b64encode(token).decode()} {rank}\n" for rank, token in enumerate(ranks))
    with open(os.path.join(path, "config.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump({**cfg, **ctc_cfg}, f, allow_unicode=True, sort_keys=False)
    with open(os.path.join(path, "configuration.json"), encoding="utf-8") as f:
        configuration = json.load(f)
    configuration["file_path_metas"]["dataset_conf"] = {"ctc_tokenizer_conf": {"vocab_path": CTC_VOCAB_FILE}}
    with open(os.path.join(path, "configuration.json"), "w", encoding="utf-8") as f:
        json.dump(configuration, f, indent=2)


def build_random_model(config: TinyConfig, seed: int = 0, tokenizer=None):
    """``(FunAsrNanoForConditionalGeneration, tokenizer, official config.yaml dict)`` with random
    weights drawn from ``seed``; ``tokenizer`` defaults to :func:`build_tokenizer`'s."""
    from ..models.fun_asr_nano.checkpoint import empty_model, frontend_from_yaml, hf_config_from_official

    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    cfg = official_config_yaml(config)
    hf_config = hf_config_from_official(cfg, llm_config_dict(config, tokenizer), frontend_from_yaml(cfg))
    hf_config.audio_token_id = tokenizer.convert_tokens_to_ids(AUDIO_PLACEHOLDER_TOKEN)
    generator = torch.Generator().manual_seed(seed)
    model = empty_model(hf_config)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                tensor.copy_(1.0 + 0.1 * torch.randn(tensor.shape, generator=generator))
            elif tensor.is_floating_point() and "positional_embedding" not in name and "rotary" not in name:
                tensor.copy_(config.init_std * torch.randn(tensor.shape, generator=generator))
    model.tie_weights()
    return model.eval(), tokenizer, cfg


def write_tiny_checkpoint(path: str, layout: str = "official", config: TinyConfig = TinyConfig(), seed: int = 0) -> str:
    """Write a random checkpoint of ``config``'s size to ``path`` in ``layout`` (``"official"`` or
    ``"hf"``); the same ``seed`` gives the same weights in both layouts. ``config.ctc`` adds the CTC
    branch (official layout only, as released: the transformers copy has none). Returns ``path``."""
    if layout not in ("official", "hf"):
        raise ValueError(f"layout must be 'official' or 'hf', not {layout!r}")
    if config.ctc and layout != "official":
        raise ValueError("the CTC branch exists in the official layout only (ctc=True needs layout='official')")
    model, tokenizer, cfg = build_random_model(config, seed)
    if layout == "official":
        write_official(path, model, tokenizer, cfg)
        if config.ctc:
            _write_ctc_branch(path, config, cfg, seed)
    else:
        write_hf(path, model, tokenizer)
    return path


def write_tiny(path: str, *, layout: str = "official", seed: int = 0, ctc: bool = False) -> str:
    """``funasr-nano tiny --family fun-asr-nano`` (this family's ``tiny`` hook): :func:`write_tiny_checkpoint`
    of the default size, with the CTC branch when ``ctc`` (official layout only).

    Raises:
        InvalidOptionError: ``ctc`` with the transformers layout.
    """
    if ctc and layout != "official":
        from ..errors import InvalidOptionError

        raise InvalidOptionError("--ctc needs --family fun-asr-nano --layout official (the layout that carries "
                                 "the CTC branch)")
    return write_tiny_checkpoint(path, layout=layout, config=TinyConfig(ctc=ctc), seed=seed)
