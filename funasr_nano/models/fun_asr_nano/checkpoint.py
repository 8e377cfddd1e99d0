"""Checkpoint loading: the official FunASR layout and the transformers layout -> one model definition.

The model definition is transformers' ``FunAsrNanoForConditionalGeneration`` (SAN-M encoder, adaptor,
Qwen3 LLM). Two folder layouts load into it:

* **official** (``FunAudioLLM/Fun-ASR-Nano-2512``): ``config.yaml`` + ``model.pt`` holding
  ``{"state_dict": ...}`` with ``audio_encoder.*``, ``audio_adaptor.*``, ``llm.*`` (and optionally the
  CTC branch ``ctc_decoder.*`` / ``ctc.*`` with ``multilingual.tiktoken``, loaded by :mod:`.ctc` for
  timestamps), plus the LLM folder named
  by ``llm_conf.init_param_path`` (``Qwen3-0.6B/``: ``config.json`` and the tokenizer). Keys are mapped
  by :func:`official_to_hf_state_dict`, an explicit map that checks every shape.
* **hf** (``FunAudioLLM/Fun-ASR-Nano-2512-hf``): ``config.json`` + ``*.safetensors`` + tokenizer files.

Differences from the official loader (``funasr/auto/auto_model.py``), on purpose: a tensor whose shape
does not match, a missing tensor or an unexpected one raises :class:`CheckpointError` listing them (the
official loader skips mismatched tensors silently).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from typing import Any, Mapping

import torch
import yaml

from ...errors import CheckpointError
from ..recognise import is_gguf_folder
from ..weights import KeyMapCheck, raise_on_key_problems
from .ctc import CTC_PREFIXES, CtcBranch, hf_to_official_ctc_key, load_ctc_branch
from .frontend import FrontendConfig
from .gguf_layout import gguf_path, load_gguf_folder
from .prompt import DEFAULT_TASKS, checkpoint_tasks

logger = logging.getLogger(__name__)

# The official adaptor (funasr/models/llm_asr/adaptor.py, `Transformer`) builds its blocks with
# funasr's transformer LayerNorm, whose eps is 1e-12; transformers' adaptor config defaults to 1e-5.
OFFICIAL_ADAPTOR_LAYER_NORM_EPS = 1e-12
# The official encoder (SenseVoiceEncoderSmall) uses torch's default LayerNorm eps.
OFFICIAL_ENCODER_LAYER_NORM_EPS = 1e-5
# Tensors of the official checkpoint outside the LLM model: the CTC branch, which FunASR uses for
# character timestamps (loaded by .ctc, beside the model).
UNUSED_OFFICIAL_PREFIXES = CTC_PREFIXES


@dataclasses.dataclass(frozen=True)
class LoadedCheckpoint:
    """What :func:`load_checkpoint` returns.

    Attributes:
        model: ``FunAsrNanoForConditionalGeneration`` in eval mode; the audio encoder and adaptor are
            float32 (as in FunASR, whose encoder runs in fp32 only), the LLM in the requested dtype.
        tokenizer: the LLM's tokenizer (``transformers`` fast tokenizer).
        frontend: feature extraction settings from the checkpoint.
        use_low_frame_rate: the official adaptor setting that decides how many audio positions enter
            the LLM (see :func:`funasr_nano.models.fun_asr_nano.prompt.num_audio_tokens`).
        layout: ``"official"`` or ``"hf"``.
        path: the folder it was loaded from.
        llm_gguf: the GGUF layout's LLM file (``model`` then holds the encoder and adaptor only).
        tasks: the tasks of :data:`funasr_nano.models.fun_asr_nano.prompt.TASKS` the model was trained for (``tasks`` in
            ``config.yaml`` / ``config.json``, written by ``funasr-nano train``); released checkpoints
            carry none and do transcription only.
        ctc: the CTC branch (official layout with ``ctc_decoder`` in ``config.yaml``), else ``None``.
    """

    model: Any
    tokenizer: Any
    frontend: FrontendConfig
    use_low_frame_rate: bool
    layout: str
    path: str
    tasks: tuple[str, ...] = DEFAULT_TASKS
    llm_gguf: str | None = None
    ctc: CtcBranch | None = None


def detect_layout(path: str) -> str:
    """``"official"`` if ``path`` holds ``config.yaml`` + ``model.pt``, ``"gguf"`` if it holds
    ``config.json`` + ``audio.safetensors`` + a ``.gguf`` (:mod:`.gguf_layout`), ``"hf"`` if it holds
    ``config.json`` + safetensors; raises :class:`CheckpointError` otherwise."""
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: not a folder")
    names = set(os.listdir(path))
    if is_gguf_folder(path):
        return "gguf"
    if "config.yaml" in names and "model.pt" in names:
        return "official"
    if "config.json" in names and any(n.endswith(".safetensors") for n in names):
        return "hf"
    raise CheckpointError(
        f"{path}: not a Fun-ASR-Nano checkpoint; expected config.yaml + model.pt (official layout) "
        f"or config.json + *.safetensors (transformers layout), or config.json + audio.safetensors + *.gguf "
        f"(GGUF layout), found {sorted(names)[:20]}"
    )


# ----------------------------------------------------------------------------------------------------
# official layout: config


def frontend_from_yaml(cfg: Mapping[str, Any]) -> FrontendConfig:
    """The fbank + LFR settings of an official ``config.yaml`` (``frontend_conf``).

    Raises:
        CheckpointError: a frontend other than ``WavFrontend``, or a CMVN file (Fun-ASR-Nano has none).
    """
    conf = dict(cfg.get("frontend_conf") or {})
    if cfg.get("frontend", "WavFrontend") not in ("WavFrontend", "wav_frontend"):
        raise CheckpointError(f"unsupported frontend {cfg.get('frontend')!r}; only WavFrontend is")
    if conf.get("cmvn_file"):
        raise CheckpointError("frontend_conf.cmvn_file is set; CMVN is not supported (Fun-ASR-Nano has none)")
    return FrontendConfig(
        sample_rate=int(conf.get("fs", 16000)),
        n_mels=int(conf.get("n_mels", 80)),
        frame_length_ms=float(conf.get("frame_length", 25)),
        frame_shift_ms=float(conf.get("frame_shift", 10)),
        window=str(conf.get("window", "hamming")),
        lfr_m=int(conf.get("lfr_m", 1)),
        lfr_n=int(conf.get("lfr_n", 1)),
    )


def hf_config_from_official(cfg: Mapping[str, Any], llm_config: Mapping[str, Any], frontend: FrontendConfig):
    """Build a ``FunAsrNanoConfig`` from an official ``config.yaml`` (parsed) and the LLM's
    ``config.json`` (parsed).

    Raises:
        CheckpointError: for encoder/adaptor settings the transformers model cannot express.
    """
    from transformers import FunAsrNanoConfig

    if cfg.get("audio_encoder") != "SenseVoiceEncoderSmall":
        raise CheckpointError(f"unsupported audio_encoder {cfg.get('audio_encoder')!r}; expected SenseVoiceEncoderSmall")
    if cfg.get("audio_adaptor") != "Transformer":
        raise CheckpointError(f"unsupported audio_adaptor {cfg.get('audio_adaptor')!r}; expected Transformer")
    enc = dict(cfg.get("audio_encoder_conf") or {})
    ada = dict(cfg.get("audio_adaptor_conf") or {})
    for key, expected in (("sanm_shfit", 0), ("normalize_before", True), ("selfattention_layer_type", "sanm")):
        if enc.get(key, expected) != expected:
            raise CheckpointError(f"audio_encoder_conf.{key}={enc[key]!r} is not supported (expected {expected!r})")
    if int(ada.get("downsample_rate", 2)) != 1:
        raise CheckpointError(
            f"audio_adaptor_conf.downsample_rate={ada.get('downsample_rate', 2)} is not supported (expected 1)"
        )
    llm_hidden = int(llm_config["hidden_size"])
    if "llm_dim" in ada and int(ada["llm_dim"]) != llm_hidden:
        logger.info("adaptor llm_dim %s replaced by the LLM's hidden size %s, as FunASR does", ada["llm_dim"], llm_hidden)
    num_blocks = int(enc.get("num_blocks", 6))
    tp_blocks = int(enc.get("tp_blocks", 0))
    audio_config = {
        "model_type": "fun_asr_nano_encoder",
        "num_mel_bins": frontend.n_mels,
        "num_stacked_frames": frontend.lfr_m,
        "hidden_size": int(enc.get("output_size", 256)),
        "num_attention_heads": int(enc.get("attention_heads", 4)),
        "intermediate_size": int(enc.get("linear_units", 2048)),
        # transformers counts every block: encoders0 (1) + encoders (num_blocks - 1) + tp_encoders
        "num_hidden_layers": num_blocks + tp_blocks,
        "num_timestamp_prediction_layers": tp_blocks,
        "fsmn_kernel_size": int(enc.get("kernel_size", 11)),
        "hidden_dropout": float(enc.get("dropout_rate", 0.1)),
        "attention_dropout": float(enc.get("attention_dropout_rate", 0.0)),
        "layer_norm_eps": OFFICIAL_ENCODER_LAYER_NORM_EPS,
        "hidden_act": "relu",
    }
    adaptor_config = {
        "hidden_size": llm_hidden,
        "num_attention_heads": int(ada.get("attention_heads", 8)),
        "intermediate_size": llm_hidden // 4,
        "num_hidden_layers": int(ada.get("n_layer", 2)),
        "projector_hidden_size": int(ada.get("ffn_dim", 2048)),
        "hidden_dropout": float(ada.get("dropout_rate", 0.0)),
        "attention_dropout": float(ada.get("attention_dropout_rate", 0.0)),
        "layer_norm_eps": OFFICIAL_ADAPTOR_LAYER_NORM_EPS,
    }
    text_config = dict(llm_config)
    try:
        return FunAsrNanoConfig(
            audio_config=audio_config,
            adaptor_config=adaptor_config,
            text_config=text_config,
            tie_word_embeddings=bool(text_config.get("tie_word_embeddings", False)),
            use_low_frame_rate=bool(ada.get("use_low_frame_rate", False)),
        )
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"config.yaml describes a model transformers cannot build: {error}") from error


# ----------------------------------------------------------------------------------------------------
# official layout: tensors

_ENCODER_LAYER_RENAMES = (
    ("self_attn.linear_out.", "self_attn.o_proj."),
    ("self_attn.fsmn_block.", "self_attn.fsmn.conv."),
    ("self_attn.linear_q.", "self_attn.q_proj."),
    ("self_attn.linear_k.", "self_attn.k_proj."),
    ("self_attn.linear_v.", "self_attn.v_proj."),
    ("feed_forward.w_1.", "mlp.fc1."),
    ("feed_forward.w_2.", "mlp.fc2."),
    ("norm1.", "input_layernorm."),
    ("norm2.", "post_attention_layernorm."),
)


def _rename_layer_tail(tail: str, key: str) -> str:
    for old, new in _ENCODER_LAYER_RENAMES:
        if tail.startswith(old):
            return new + tail[len(old):]
    raise CheckpointError(f"unexpected tensor {key!r} in model.pt")


def _official_key_to_hf(key: str, num_blocks: int, num_layers: int) -> str | list[str] | None:
    """Map one official key; a fused ``linear_q_k_v`` maps to three keys; ``None`` = unused tensor."""
    if key.startswith(UNUSED_OFFICIAL_PREFIXES):
        return None
    if key.startswith("llm.lm_head."):
        return "lm_head." + key[len("llm.lm_head."):]
    if key.startswith("llm.model."):
        return "model.language_model." + key[len("llm.model."):]
    if key.startswith("audio_adaptor."):
        tail = key[len("audio_adaptor."):]
        match = re.fullmatch(r"linear([12])\.(weight|bias)", tail)
        if match:
            return f"model.multi_modal_projector.linear_{match[1]}.{match[2]}"
        match = re.fullmatch(r"blocks\.(\d+)\.(.+)", tail)
        if match:
            return f"model.multi_modal_projector.layers.{match[1]}." + _rename_layer_tail(match[2], key)
        raise CheckpointError(f"unexpected tensor {key!r} in model.pt")
    if key.startswith("audio_encoder."):
        tail = key[len("audio_encoder."):]
        if tail.startswith("after_norm."):  # norm after the transcription blocks
            return f"model.audio_tower.layers.{num_blocks - 1}.final_layernorm." + tail[len("after_norm."):]
        if tail.startswith("tp_norm."):  # norm after the timestamp-prediction blocks
            return f"model.audio_tower.layers.{num_layers - 1}.final_layernorm." + tail[len("tp_norm."):]
        match = re.fullmatch(r"(encoders0|encoders|tp_encoders)\.(\d+)\.(.+)", tail)
        if not match:
            raise CheckpointError(f"unexpected tensor {key!r} in model.pt")
        group, index, rest = match[1], int(match[2]), match[3]
        layer = {"encoders0": index, "encoders": 1 + index, "tp_encoders": num_blocks + index}[group]
        prefix = f"model.audio_tower.layers.{layer}."
        if rest.startswith("self_attn.linear_q_k_v."):
            param = rest[len("self_attn.linear_q_k_v."):]
            return [f"{prefix}self_attn.{p}_proj.{param}" for p in ("q", "k", "v")]
        return prefix + _rename_layer_tail(rest, key)
    raise CheckpointError(f"unexpected tensor {key!r} in model.pt")


def official_to_hf_state_dict(
    state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size], num_blocks: int
) -> dict[str, torch.Tensor]:
    """Convert an official ``model.pt`` state dict to transformers' key names.

    Every tensor is mapped by name (fused ``linear_q_k_v`` split into q/k/v), then checked against
    ``expected`` (name -> shape of the target model).

    Raises:
        CheckpointError: listing missing tensors, unexpected tensors and shape mismatches by name.
    """
    num_layers = 1 + max(
        (int(m[1]) for k in expected if (m := re.match(r"model\.audio_tower\.layers\.(\d+)\.", k))), default=-1
    )
    check = KeyMapCheck(expected)
    skipped = 0
    for key, tensor in state_dict.items():
        try:
            target = _official_key_to_hf(key, num_blocks, num_layers)
        except CheckpointError:
            check.add(key, None, tensor)
            continue
        if target is None:
            skipped += 1
            continue
        if isinstance(target, list) and tensor.shape[0] % 3:
            check.mismatched.append(f"{key}: {tuple(tensor.shape)} is not a fused q/k/v tensor")
            continue
        targets, tensors = ([target], [tensor]) if isinstance(target, str) else (target, list(tensor.chunk(3, 0)))
        for name, value in zip(targets, tensors):
            check.add(key, name, value)
    if skipped:
        logger.debug("%d CTC-branch tensors left to the CTC loader", skipped)
    return check.result("model.pt", optional=("lm_head.weight",))  # a tied output layer is the embedding table


def _resolve(path: str, maybe_relative: str) -> str:
    return maybe_relative if os.path.isabs(maybe_relative) else os.path.join(path, maybe_relative)


def _fix_adaptor_attention(model) -> None:
    # transformers leaves the adaptor's attention implementation unset (it falls back to eager with a
    # warning); eager is the official adaptor's arithmetic, so say so.
    if getattr(model.config.adaptor_config, "_attn_implementation", None) is None:
        model.config.adaptor_config._attn_implementation = "eager"


def empty_model(config):
    """A ``FunAsrNanoForConditionalGeneration`` for ``config`` with uninitialised weights (the caller loads
    every tensor right after), the adaptor's attention fixed as for a loaded checkpoint."""
    from transformers import FunAsrNanoForConditionalGeneration
    from transformers.initialization import no_init_weights

    with no_init_weights():  # every tensor is overwritten by the checkpoint right after
        model = FunAsrNanoForConditionalGeneration(config)
    _fix_adaptor_attention(model)
    return model


def _add_logit_softcapping(model) -> None:
    """Gemma-2's final logit soft-capping, ``tanh(logits / cap) * cap`` (``Gemma2ForCausalLM.forward``),
    which transformers' Fun-ASR-Nano head (a bare ``lm_head``) does not apply: added as a forward hook
    on ``lm_head`` for LLMs whose config sets ``final_logit_softcapping`` (swapped Gemma-2). Greedy
    decoding is unchanged by it (a monotonic map); sampling, beam search and the training loss are not."""
    cap = getattr(model.config.text_config, "final_logit_softcapping", None)
    if cap:
        model.lm_head.register_forward_hook(lambda module, args, logits: torch.tanh(logits / cap) * cap)


def _load_official(path: str):
    from transformers import AutoTokenizer

    try:
        with open(os.path.join(path, "config.yaml"), encoding="utf-8") as f:
            cfg = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as error:
        raise CheckpointError(f"{path}/config.yaml is not valid YAML: {' '.join(str(error).split())}") from error
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}/config.yaml must be a mapping, not {type(cfg).__name__}")
    if cfg.get("model") not in ("FunASRNano", None):
        raise CheckpointError(f"{path}/config.yaml: model is {cfg.get('model')!r}, expected FunASRNano")
    llm_dir = _resolve(path, str((cfg.get("llm_conf") or {}).get("init_param_path", "Qwen3-0.6B")))
    tokenizer_dir = _resolve(path, str((cfg.get("tokenizer_conf") or {}).get("init_param_path", llm_dir)))
    llm_config_path = os.path.join(llm_dir, "config.json")
    if not os.path.isfile(llm_config_path):
        raise CheckpointError(f"{path}: the LLM folder has no config.json ({llm_config_path})")
    with open(llm_config_path, encoding="utf-8") as f:
        llm_config = json.load(f)
    frontend = frontend_from_yaml(cfg)
    config = hf_config_from_official(cfg, llm_config, frontend)
    try:
        # mmap: tensors stay in the page cache instead of a second in-memory copy (0.8 B fp32 = 3.2 GB)
        checkpoint = torch.load(os.path.join(path, "model.pt"), map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise CheckpointError(f"{path}/model.pt cannot be read: {error}") from error
    state_dict = checkpoint.get("state_dict", checkpoint.get("model", checkpoint)) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{path}/model.pt does not hold a state dict")
    model = empty_model(config)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    num_blocks = int((cfg.get("audio_encoder_conf") or {}).get("num_blocks", 6))
    converted = official_to_hf_state_dict(state_dict, expected, num_blocks)
    # assign: the model takes the checkpoint's tensors (its own were never initialised nor touched)
    model.load_state_dict(converted, strict=False, assign=True)
    if config.tie_word_embeddings or "lm_head.weight" not in converted:
        model.tie_weights()
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    except Exception as error:
        raise CheckpointError(f"{path}: cannot load the tokenizer from {tokenizer_dir}: {error}") from error
    ctc = load_ctc_branch(path, cfg, _file_path_metas(path), state_dict, config.audio_config.hidden_size,
                          _rename_layer_tail)
    return (model, tokenizer, frontend, bool(config.use_low_frame_rate), checkpoint_tasks(cfg.get("tasks"), f"{path}/config.yaml"),
            ctc)


def _file_path_metas(path: str) -> dict:
    """``file_path_metas`` of the ModelScope ``configuration.json`` (how FunASR resolves file paths),
    ``{}`` when there is none."""
    file = os.path.join(path, "configuration.json")
    if not os.path.isfile(file):
        return {}
    try:
        with open(file, encoding="utf-8") as f:
            metas = json.load(f).get("file_path_metas") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return metas if isinstance(metas, dict) else {}


def _frontend_and_settings(path: str, model, use_low_frame_rate: bool | None):
    """The frontend, the audio-length rule and the tasks of a transformers-style config."""
    audio = model.config.audio_config
    frontend = FrontendConfig(n_mels=audio.num_mel_bins, lfr_m=audio.num_stacked_frames, lfr_n=6)
    if use_low_frame_rate is None:
        # The transformers port feeds every adaptor frame; the official Fun-ASR-Nano-2512 config says
        # use_low_frame_rate: true. A converted checkpoint without the field follows the official model.
        use_low_frame_rate = bool(getattr(model.config, "use_low_frame_rate", True))
    return frontend, use_low_frame_rate, checkpoint_tasks(getattr(model.config, "tasks", None), f"{path}/config.json")


def _load_hf(path: str, use_low_frame_rate: bool | None):
    from transformers import AutoTokenizer, FunAsrNanoForConditionalGeneration

    try:
        model, info = FunAsrNanoForConditionalGeneration.from_pretrained(
            path, output_loading_info=True, dtype=torch.float32
        )
    except Exception as error:
        raise CheckpointError(f"{path}: cannot load the transformers checkpoint: {error}") from error
    mismatched = [f"{k}: checkpoint {a}, model {b}" for k, a, b in info.get("mismatched_keys", [])]
    raise_on_key_problems(list(info.get("missing_keys", [])), list(info.get("unexpected_keys", [])), mismatched, path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as error:
        raise CheckpointError(f"{path}: cannot load the tokenizer: {error}") from error
    return (model, tokenizer, *_frontend_and_settings(path, model, use_low_frame_rate))


def load_checkpoint(
    path: str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    use_low_frame_rate: bool | None = None,
) -> LoadedCheckpoint:
    """Load a Fun-ASR-Nano checkpoint folder in either layout.

    Args:
        path: checkpoint folder (official or transformers layout, detected from its files).
        device: where to put the model.
        dtype: LLM dtype, ``torch.float32`` or ``torch.bfloat16``; the encoder and adaptor stay float32.
        use_low_frame_rate: override the checkpoint's setting (official layout: ``audio_adaptor_conf``;
            transformers layout: ``use_low_frame_rate`` in ``config.json``, else ``True``).

    Raises:
        CheckpointError: missing files, unreadable tensors, missing/unexpected/mis-shaped tensors, or an
            unsupported configuration.
    """
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype must be torch.float32, torch.bfloat16 or torch.float16, not {dtype}")
    path = os.fspath(path)
    layout = detect_layout(path)
    llm_gguf = ctc = None
    if layout == "official":
        model, tokenizer, frontend, low_frame_rate, tasks, ctc = _load_official(path)
        if use_low_frame_rate is not None:
            low_frame_rate = use_low_frame_rate
    elif layout == "gguf":
        model, tokenizer, _ = load_gguf_folder(path)
        frontend, low_frame_rate, tasks = _frontend_and_settings(path, model, use_low_frame_rate)
        llm_gguf = gguf_path(path)
    else:
        model, tokenizer, frontend, low_frame_rate, tasks = _load_hf(path, use_low_frame_rate)
    _fix_adaptor_attention(model)
    model.eval().requires_grad_(False)
    model.to(device=device, dtype=torch.float32)
    if ctc is not None:
        ctc.head.to(device=device)
    if llm_gguf is None:
        model.model.language_model.to(dtype)
        model.lm_head.to(dtype)
        _add_logit_softcapping(model)
    logger.info("loaded %s checkpoint %s (LLM %s, low frame rate %s)", layout, path,
                llm_gguf or dtype, low_frame_rate)
    return LoadedCheckpoint(model, tokenizer, frontend, low_frame_rate, layout, path, tasks, llm_gguf, ctc)


def ctc_head_to_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A :class:`~.ctc.CtcHead` state dict in the official ``model.pt`` names (``ctc_decoder.*``,
    ``ctc.ctc_lo.*``; the inverse of the loader's map). Used to write official-layout checkpoints."""
    inverse = {new: old for old, new in _ENCODER_LAYER_RENAMES}

    def tail(rest: str) -> str:
        return next(old + rest[len(new):] for new, old in inverse.items() if rest.startswith(new))

    return {hf_to_official_ctc_key(name, tail): tensor for name, tensor in state_dict.items()}


def hf_to_official_state_dict(state_dict: Mapping[str, torch.Tensor], num_blocks: int) -> dict[str, torch.Tensor]:
    """Inverse of :func:`official_to_hf_state_dict`: transformers key names -> official ``model.pt``
    names (q/k/v fused into ``linear_q_k_v`` for the encoder). Used to write official-layout
    checkpoints (tiny test models, exported fine-tunes)."""
    inverse = {new: old for old, new in _ENCODER_LAYER_RENAMES}
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}

    def rename_tail(tail: str) -> str:
        for new, old in inverse.items():
            if tail.startswith(new):
                return old + tail[len(new):]
        raise KeyError(tail)

    for key, tensor in state_dict.items():
        if key.startswith("lm_head."):
            out["llm." + key] = tensor
        elif key.startswith("model.language_model."):
            out["llm.model." + key[len("model.language_model."):]] = tensor
        elif m := re.fullmatch(r"model\.multi_modal_projector\.linear_([12])\.(.+)", key):
            out[f"audio_adaptor.linear{m[1]}.{m[2]}"] = tensor
        elif m := re.fullmatch(r"model\.multi_modal_projector\.layers\.(\d+)\.(.+)", key):
            out[f"audio_adaptor.blocks.{m[1]}." + rename_tail(m[2])] = tensor
        elif m := re.fullmatch(r"model\.audio_tower\.layers\.(\d+)\.(.+)", key):
            layer, rest = int(m[1]), m[2]
            if rest.startswith("final_layernorm."):
                norm = "after_norm." if layer == num_blocks - 1 else "tp_norm."
                out["audio_encoder." + norm + rest[len("final_layernorm."):]] = tensor
                continue
            group = ("encoders0.0." if layer == 0 else f"encoders.{layer - 1}." if layer < num_blocks
                     else f"tp_encoders.{layer - num_blocks}.")
            if qkv := re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", rest):
                fused.setdefault(f"audio_encoder.{group}self_attn.linear_q_k_v.{qkv[2]}", {})[qkv[1]] = tensor
            else:
                out["audio_encoder." + group + rename_tail(rest)] = tensor
        else:
            raise KeyError(f"no official name for {key!r}")
    for key, parts in fused.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)
    return out
