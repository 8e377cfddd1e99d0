"""Tiny random Qwen3-ASR checkpoints, written in the real folder layouts.

No model hub is reachable on our machines, so tests and benchmarks run on checkpoints this module writes:
the real architecture (AuT audio encoder with windowed attention, projector, Qwen3 thinker with q/k norms
and a multimodal-RoPE section of its own) at any size, random weights, and a tokenizer whose special
tokens sit at Qwen3-ASR's ids. Two layouts:

* ``"official"``, as ``Qwen/Qwen3-ASR-0.6B`` ships (what the reference package ``qwen-asr`` reads):
  ``config.json`` with ``thinker_config``, ``model.safetensors`` with ``thinker.*`` keys (the tied output
  layer stored as its own copy), ``vocab.json`` + ``merges.txt`` + ``tokenizer_config.json``,
  ``preprocessor_config.json`` (Whisper-style 128-bin log-mel), ``chat_template.json`` and
  ``generation_config.json``;
* ``"hf"``, what transformers' ``Qwen3ASRForConditionalGeneration.save_pretrained`` and
  ``Qwen3ASRProcessor.save_pretrained`` write (the ``-hf`` repositories).

The tokenizer is byte-level BPE without merges (any text round-trips, one token per byte). Its regular
vocabulary has Qwen's 151,643 entries (the 256 byte symbols, then CJK characters and character pairs that
no merge produces but that decode to readable text), so the special and added tokens take their real ids:
``<|endoftext|>`` 151643, ``<|im_end|>`` 151645, ``<|audio_start|>`` 151669, ``<|audio_pad|>`` 151676,
``<asr_text>`` 151704. This matters because the reference stops generation at the hard-coded ids
151643/151645 (``Qwen3ASRForConditionalGeneration.generate``).
"""

from __future__ import annotations

import dataclasses
import json
import os

import torch

from ..models.chat import QWEN_SPECIAL_TOKENS

# Qwen2/Qwen3 regular vocabulary size: the first special token's id.
QWEN_REGULAR_VOCAB = 151643
# Qwen3's added tokens after the 14 special ones (151657-151668), not special.
QWEN3_ADDED_TOKENS = ("<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                      "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
                      "<think>", "</think>")
# Qwen3-ASR's audio and speech tokens from 151669 on: (token, special). The ids between <|audio_pad|>
# (151676) and <asr_text> (151704) hold reserved tokens in the released tokenizer; they are written
# here as <blank1>...<blank27>.
QWEN3_ASR_TOKENS = (
    ("<|audio_start|>", True), ("<|audio_end|>", True), ("<tts_pad>", True), ("<tts_text_bos>", True),
    ("<tts_text_eod>", True), ("<tts_text_bos_single>", True), ("<non_speech>", False), ("<|audio_pad|>", True),
    *((f"<blank{i}>", True) for i in range(1, 28)),
    ("<asr_text>", False), ("<timestamp>", False),
)
# transformers reads these attributes of the tokenizer (tokenizer_config.json extra_special_tokens).
EXTRA_SPECIAL_TOKENS = {
    "audio_token": "<|audio_pad|>", "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>",
    "image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "vision_bos_token": "<|vision_start|>",
    "vision_eos_token": "<|vision_end|>",
}
# The languages Qwen3-ASR's config lists (support_languages), as the reference spells them.
SUPPORT_LANGUAGES = (
    "Chinese", "English", "Cantonese", "Arabic", "German", "French", "Spanish", "Portuguese", "Indonesian",
    "Italian", "Korean", "Russian", "Thai", "Vietnamese", "Japanese", "Turkish", "Hindi", "Malay", "Dutch",
    "Swedish", "Danish", "Finnish", "Polish", "Czech", "Filipino", "Persian", "Greek", "Romanian", "Hungarian",
    "Macedonian",
)
# The conversation of a speech-recognition request: the system turn holds the context text (may be
# empty), the user turn the audio, then the assistant header. Accepts string or list contents, as the
# released template does.
CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='', audio='') -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'system' -%}"
    "{%- if m.content is string -%}{%- set ns.system = ns.system + m.content -%}"
    "{%- else -%}{%- for c in m.content -%}{%- if c.type == 'text' -%}{%- set ns.system = ns.system + c.text -%}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- elif m.role == 'user' and m.content is not string -%}"
    "{%- for c in m.content -%}{%- if c.type == 'audio' or 'audio' in c -%}"
    "{%- set ns.audio = ns.audio + '<|audio_start|><|audio_pad|><|audio_end|>' -%}{%- endif -%}{%- endfor -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{{- '<|im_start|>system\\n' + ns.system + '<|im_end|>\\n' -}}"
    "{{- '<|im_start|>user\\n' + ns.audio + '<|im_end|>\\n' -}}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


@dataclasses.dataclass(frozen=True)
class TinyQwen3AsrConfig:
    """Sizes of a random Qwen3-ASR checkpoint. The defaults make a small model (the 151,936-row
    embedding table dominates: ~5 M parameters); :meth:`full_size` gives Qwen3-ASR-0.6B."""

    encoder_dim: int = 32
    encoder_layers: int = 2
    encoder_heads: int = 4
    encoder_ffn: int = 64
    downsample_hidden: int = 8
    n_window: int = 50  # mel frames per encoder chunk / 2 (the reference processor assumes 50)
    n_window_infer: int = 800  # encoder attention window in mel frames: 8 s, as released
    llm_dim: int = 32
    llm_layers: int = 2
    llm_heads: int = 4
    llm_kv_heads: int = 2
    llm_head_dim: int = 16
    llm_ffn: int = 64
    vocab_size: int = 151936
    mrope_section: tuple[int, ...] = (4, 2, 2)  # head_dim/2 = 8 frequencies (released: 24, 20, 20 of 64)
    rope_theta: float = 1000000.0
    max_position_embeddings: int = 65536
    tie_word_embeddings: bool = True
    init_std: float = 0.2  # larger than usual so random models produce varied tokens

    @classmethod
    def full_size(cls) -> "TinyQwen3AsrConfig":
        """Qwen3-ASR-0.6B: 18-layer 896-wide AuT encoder, 28-layer Qwen3 thinker (1024 wide, head_dim 128,
        16/8 heads), tied embeddings."""
        return cls(encoder_dim=896, encoder_layers=18, encoder_heads=14, encoder_ffn=3584, downsample_hidden=480,
                   n_window=50, n_window_infer=800, llm_dim=1024, llm_layers=28, llm_heads=16, llm_kv_heads=8,
                   llm_head_dim=128, llm_ffn=3072, mrope_section=(24, 20, 20), init_std=0.02)


# ----------------------------------------------------------------------------------------------------
# tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """The byte-level BPE alphabet: each byte as one printable character (GPT-2's mapping, which Qwen's
    vocabulary uses): printable Latin-1 bytes stand for themselves, the others take U+0100 onwards."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def regular_vocabulary() -> dict[str, int]:
    """Qwen-sized regular vocabulary: the 256 byte symbols, then every CJK unified ideograph, then pairs
    of common ideographs, as byte-level strings; ids 0..151642."""
    alphabet = _bytes_to_unicode()

    def encode(text: str) -> str:
        return "".join(alphabet[b] for b in text.encode("utf-8"))

    vocab = {alphabet[b]: i for i, b in enumerate(sorted(alphabet, key=lambda b: ord(alphabet[b])))}
    chars = [chr(c) for c in range(0x4E00, 0xA000)]
    for char in chars:
        vocab[encode(char)] = len(vocab)
    for first in chars:
        for second in chars:
            if len(vocab) == QWEN_REGULAR_VOCAB:
                return vocab
            vocab[encode(first + second)] = len(vocab)
    raise AssertionError("unreachable: enough pairs")


def added_tokens() -> list[tuple[int, str, bool]]:
    """``(id, token, special)`` of the tokens after the regular vocabulary, at Qwen3-ASR's ids."""
    tokens = [(t, True) for t in QWEN_SPECIAL_TOKENS] + [(t, False) for t in QWEN3_ADDED_TOKENS] + list(QWEN3_ASR_TOKENS)
    return [(QWEN_REGULAR_VOCAB + i, token, special) for i, (token, special) in enumerate(tokens)]


def write_official_tokenizer(path: str) -> None:
    """Write ``vocab.json``, ``merges.txt`` and ``tokenizer_config.json`` (a Qwen2 tokenizer) to ``path``."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(regular_vocabulary(), f, ensure_ascii=False)
    with open(os.path.join(path, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
    decoder = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                        "special": special} for i, t, special in added_tokens()}
    config = {
        "add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": decoder,
        "additional_special_tokens": [t for _, t, special in added_tokens() if special and t not in QWEN_SPECIAL_TOKENS[:3]],
        "bos_token": None, "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
        "extra_special_tokens": EXTRA_SPECIAL_TOKENS, "model_max_length": 131072, "pad_token": "<|endoftext|>",
        "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)


# ----------------------------------------------------------------------------------------------------
# configs and weights


def official_config(config: TinyQwen3AsrConfig) -> dict:
    """The official ``config.json`` (the structure of Qwen3-ASR-0.6B's) for ``config``."""
    ids = {token: i for i, token, _ in added_tokens()}
    audio = {
        "model_type": "qwen3_asr_audio_encoder", "num_mel_bins": 128, "encoder_layers": config.encoder_layers,
        "encoder_attention_heads": config.encoder_heads, "encoder_ffn_dim": config.encoder_ffn,
        "d_model": config.encoder_dim, "dropout": 0.0, "attention_dropout": 0.0, "activation_function": "gelu",
        "activation_dropout": 0.0, "scale_embedding": False, "initializer_range": 0.02, "max_source_positions": 1500,
        "n_window": config.n_window, "output_dim": config.llm_dim, "n_window_infer": config.n_window_infer,
        "conv_chunksize": 500, "downsample_hidden_size": config.downsample_hidden,
    }
    text = {
        "model_type": "qwen3_asr_text", "vocab_size": config.vocab_size, "hidden_size": config.llm_dim,
        "intermediate_size": config.llm_ffn, "num_hidden_layers": config.llm_layers,
        "num_attention_heads": config.llm_heads, "num_key_value_heads": config.llm_kv_heads,
        "head_dim": config.llm_head_dim, "hidden_act": "silu", "max_position_embeddings": config.max_position_embeddings,
        "initializer_range": 0.02, "rms_norm_eps": 1e-6, "use_cache": True,
        "tie_word_embeddings": config.tie_word_embeddings, "rope_theta": config.rope_theta,
        "rope_scaling": {"rope_type": "default", "mrope_section": list(config.mrope_section), "interleaved": True,
                         "mrope_interleaved": True},
        "attention_bias": False, "attention_dropout": 0.0,
    }
    return {
        "architectures": ["Qwen3ASRForConditionalGeneration"], "model_type": "qwen3_asr",
        "support_languages": list(SUPPORT_LANGUAGES),
        "thinker_config": {
            "model_type": "qwen3_asr_thinker", "audio_config": audio, "text_config": text,
            "audio_token_id": ids["<|audio_pad|>"], "audio_start_token_id": ids["<|audio_start|>"],
            "audio_end_token_id": ids["<|audio_end|>"], "user_token_id": 872, "initializer_range": 0.02,
            "dtype": "float32",
        },
        "dtype": "float32",
    }


PREPROCESSOR_CONFIG = {
    "chunk_length": 30, "dither": 0.0, "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 128,
    "hop_length": 160, "n_fft": 400, "n_samples": 480000, "nb_max_frames": 3000, "padding_side": "right",
    "padding_value": 0.0, "processor_class": "Qwen3ASRProcessor", "return_attention_mask": True,
    "sampling_rate": 16000,
}
GENERATION_CONFIG = {"do_sample": False, "eos_token_id": [151645, 151643], "pad_token_id": 151643}


def randomize(model, seed: int, init_std: float) -> None:
    """Fill ``model``'s weights in place from ``seed``: norm weights near 1 (1 + 0.1 N(0, 1)), the other
    floating-point tensors N(0, ``init_std``); the fixed sinusoidal ``positional_embedding`` is kept."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if "norm" in name and name.endswith("weight"):
                tensor.copy_(1.0 + 0.1 * torch.randn(tensor.shape, generator=generator))
            elif tensor.is_floating_point() and "positional_embedding" not in name:
                tensor.copy_(init_std * torch.randn(tensor.shape, generator=generator))


def build_random_model(config: TinyQwen3AsrConfig = TinyQwen3AsrConfig(), seed: int = 0):
    """``(Qwen3ASRForConditionalGeneration, official config.json dict)`` with random weights drawn from
    ``seed`` (norm weights near 1, the rest normal with ``config.init_std``)."""
    from ..models.qwen3_asr.checkpoint import hf_config_from_official, new_model

    official = official_config(config)
    model = new_model(hf_config_from_official(official))
    randomize(model, seed, config.init_std)
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.eval(), official


def write_json(path: str, name: str, value) -> None:
    """Write ``value`` as ``path/name``, UTF-8 JSON indented as the released checkpoints' files are."""
    with open(os.path.join(path, name), "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=2)


def write_official(path: str, model, official: dict) -> None:
    """Write ``model`` in the official layout (see the module docstring)."""
    from safetensors.torch import save_file

    from ..models.qwen3_asr.checkpoint import hf_to_official_state_dict

    os.makedirs(path, exist_ok=True)
    tied = bool(official["thinker_config"]["text_config"]["tie_word_embeddings"])
    tensors = {k: v.detach().contiguous() for k, v in hf_to_official_state_dict(model.state_dict(), tied).items()}
    save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    write_official_files(path, official)


def write_official_files(path: str, official: dict) -> None:
    """The official layout's files beside ``model.safetensors``: ``config.json`` (``official``), the
    generation, feature and chat-template settings, and the Qwen2 tokenizer."""
    write_json(path, "config.json", official)
    write_json(path, "generation_config.json", GENERATION_CONFIG)
    write_json(path, "preprocessor_config.json", PREPROCESSOR_CONFIG)
    write_json(path, "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    write_official_tokenizer(path)


def write_hf(path: str, model, tokenizer_dir: str, *, generation: bool = True, **processor_settings) -> None:
    """Write ``model`` in the transformers layout (``save_pretrained`` of the model and of a
    ``Qwen3ASRProcessor`` around the tokenizer in ``tokenizer_dir``, with ``processor_settings``);
    ``generation``: with Qwen3-ASR's generation config."""
    from transformers import AutoTokenizer, GenerationConfig, Qwen3ASRFeatureExtractor, Qwen3ASRProcessor

    if generation:
        model.generation_config = GenerationConfig(**GENERATION_CONFIG)
    model.save_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    processor = Qwen3ASRProcessor(feature_extractor=Qwen3ASRFeatureExtractor(), tokenizer=tokenizer,
                                  chat_template=CHAT_TEMPLATE, **processor_settings)
    processor.save_pretrained(path)


def check_layout(layout: str) -> None:
    """Raises ValueError unless ``layout`` is ``"official"`` or ``"hf"``."""
    if layout not in ("official", "hf"):
        raise ValueError(f"layout must be 'official' or 'hf', not {layout!r}")


def write_in_layout(path: str, layout: str, write_official_layout, write_hf_layout) -> str:
    """Write a checkpoint to ``path`` in ``layout``: ``write_official_layout(path)``, or
    ``write_hf_layout(path, tokenizer_dir)`` with the official tokenizer written to a temporary
    ``tokenizer_dir``. Returns ``path``."""
    check_layout(layout)
    if layout == "official":
        write_official_layout(path)
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as tokenizer_dir:
            write_official_tokenizer(tokenizer_dir)
            write_hf_layout(path, tokenizer_dir)
    return path


def write_tiny_checkpoint(path: str, layout: str = "official", config: TinyQwen3AsrConfig = TinyQwen3AsrConfig(),
                          seed: int = 0) -> str:
    """Write a random Qwen3-ASR checkpoint of ``config``'s size to ``path`` in ``layout`` (``"official"``
    or ``"hf"``); the same ``seed`` gives the same weights in both layouts. Returns ``path``."""
    check_layout(layout)
    model, official = build_random_model(config, seed)
    return write_in_layout(path, layout, lambda out: write_official(out, model, official),
                           lambda out, tokenizer_dir: write_hf(out, model, tokenizer_dir))


def write_tiny(path: str, *, layout: str = "official", seed: int = 0, ctc: bool = False) -> str:
    """``funasr-nano tiny --family qwen3-asr`` (the family's ``tiny`` hook): :func:`write_tiny_checkpoint`.

    Raises:
        InvalidOptionError: ``ctc`` (Qwen3-ASR has no CTC branch).
    """
    if ctc:
        from ..errors import InvalidOptionError

        raise InvalidOptionError("--ctc needs --family fun-asr-nano --layout official (the layout that carries "
                                 "the CTC branch)")
    return write_tiny_checkpoint(path, layout=layout, seed=seed)
