"""A tiny random Qwen3-ASR checkpoint in both layouts, for the export tests (until the family's own
writer, funasr_nano/testing/tiny_qwen3_asr.py, is merged; then these tests take that one)."""

from __future__ import annotations

import json
import os

import torch

# The LLM's interleaved MRoPE sections for head_dim 16 (8 rotary pairs). Like Qwen3-ASR's [24, 20, 20]
# for head_dim 128, they leave a pair that llama.cpp rotates by its fourth position axis (pair 7 here,
# pairs 61 and 62 there), so the tests exercise that path too.
MROPE_SECTION = [4, 2, 2]
AUDIO_TOKENS = ("<|audio_start|>", "<|audio_end|>", "<|audio_pad|>", "<asr_text>")


def build(seed: int = 0):
    """``(Qwen3ASRForConditionalGeneration, tokenizer)`` with random weights."""
    from tokenizers import AddedToken
    from transformers import Qwen3ASRConfig, Qwen3ASRForConditionalGeneration

    from funasr_nano.training.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken(t, special=True, normalized=False)
                                                                for t in AUDIO_TOKENS]})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>", "<|audio_pad|>")}
    config = Qwen3ASRConfig(
        audio_config=dict(num_mel_bins=128, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                          d_model=32, output_dim=64, downsample_hidden_size=8),
        text_config=dict(model_type="qwen3", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=True,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"]),
        audio_token_id=ids["<|audio_pad|>"], pad_token_id=ids["<|im_end|>"],
        eos_token_id=[ids["<|endoftext|>"], ids["<|im_end|>"]],
    )
    model = Qwen3ASRForConditionalGeneration(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("norm.weight"):
                tensor.copy_(1.0 + 0.1 * torch.randn(tensor.shape, generator=generator))
            elif tensor.is_floating_point() and "positional_embedding" not in name:
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=generator))
    model.tie_weights()
    return model.eval(), tokenizer


def official_state(model) -> dict[str, torch.Tensor]:
    """The official layout's names (``thinker.*``; the projector is ``proj1``/``proj2`` of the tower)."""
    state = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("model.language_model."):
            key = "thinker.model." + name[len("model.language_model."):]
        elif name.startswith("model.audio_tower."):
            key = "thinker." + name[len("model."):]
        elif name.startswith("model.multi_modal_projector."):
            key = "thinker.audio_tower." + name[len("model.multi_modal_projector."):].replace(
                "linear_1", "proj1").replace("linear_2", "proj2")
        elif name == "lm_head.weight":
            key = "thinker.lm_head.weight"
        else:
            raise AssertionError(name)
        state[key] = tensor.detach().clone().contiguous()
    return state


def official_config(model) -> dict:
    text = model.config.text_config.to_dict()
    text.update(model_type="qwen3_asr_text", rope_theta=text["rope_parameters"]["rope_theta"],
                rope_scaling={"interleaved": True, "mrope_interleaved": True, "mrope_section": MROPE_SECTION,
                              "rope_type": "default"})
    text.pop("rope_parameters")
    audio = model.config.audio_config.to_dict()
    return {"architectures": ["Qwen3ASRForConditionalGeneration"], "model_type": "qwen3_asr",
            "thinker_config": {"audio_config": audio, "text_config": text, "model_type": "qwen3_asr_thinker",
                               "audio_token_id": model.config.audio_token_id}}


def write(path: str, layout: str, seed: int = 0) -> str:
    from safetensors.torch import save_file

    model, tokenizer = build(seed)
    os.makedirs(path, exist_ok=True)
    if layout == "hf":
        model.save_pretrained(path)
    else:
        save_file(official_state(model), os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
            json.dump(official_config(model), f, indent=2)
    tokenizer.save_pretrained(path)
    return path
