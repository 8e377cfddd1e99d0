"""Checkpoint loading: Qwen3-ASR's official layout and the transformers layout -> one model definition.

The model definition is transformers' ``Qwen3ASRForConditionalGeneration`` (AuT audio encoder, a two-layer
projector, a Qwen3 text LLM with q/k norms). Two folder layouts load into it:

* **official** (``Qwen/Qwen3-ASR-0.6B``, ``-1.7B``, read by the reference package ``qwen-asr``):
  ``config.json`` with ``model_type: qwen3_asr`` and a ``thinker_config`` (``audio_config``,
  ``text_config`` whose ``rope_scaling`` holds the interleaved multimodal-RoPE ``mrope_section``,
  ``audio_token_id``), ``*.safetensors`` with ``thinker.audio_tower.*``, ``thinker.model.*``,
  ``thinker.lm_head.*``, the Qwen2 tokenizer files (``vocab.json``, ``merges.txt``,
  ``tokenizer_config.json``), ``preprocessor_config.json`` and ``chat_template.json``. Tensors are mapped
  by :func:`official_to_hf_state_dict`, an explicit map that checks every shape and refuses leftovers;
  the config by :func:`hf_config_from_official`.
* **hf** (``Qwen/Qwen3-ASR-0.6B-hf``, what ``Qwen3ASRForConditionalGeneration.save_pretrained`` writes):
  ``config.json`` with ``audio_config``/``text_config`` at the top, ``model.safetensors`` with
  ``model.audio_tower.*``, ``model.multi_modal_projector.*``, ``model.language_model.*``, tokenizer and
  processor files.

The official thinker rotates queries and keys with *interleaved multimodal RoPE* (three position axes,
``mrope_section`` frequencies each). Speech prompts are 1-D: the reference gives every token the same
position on all three axes (``Qwen3ASRThinkerForConditionalGeneration.get_rope_index``: the cumulative
attention mask, ``qwen_asr/core/transformers_backend/modeling_qwen3_asr.py``), and with equal axes the
interleaving selects the same angle for every frequency, so the rotation is plain RoPE. transformers'
port therefore uses a plain Qwen3 text model; the section is kept in :attr:`LoadedCheckpoint.mrope_section`
for exports that need it (GGUF ``rope.dimension_sections``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Mapping

import torch

from ...errors import CheckpointError
from ..weights import KeyMapCheck, raise_on_key_problems, read_json_object

logger = logging.getLogger(__name__)

MODEL_TYPE = "qwen3_asr"
# Official key prefix -> transformers key prefix. The official audio tower ends in two linear layers
# (proj1, GELU, proj2) that transformers calls the multi-modal projector.
OFFICIAL_PREFIXES = (
    ("thinker.audio_tower.proj1.", "model.multi_modal_projector.linear_1."),
    ("thinker.audio_tower.proj2.", "model.multi_modal_projector.linear_2."),
    ("thinker.audio_tower.", "model.audio_tower."),
    ("thinker.model.", "model.language_model."),
    ("thinker.lm_head.", "lm_head."),
)
# The official audio encoder settings transformers' Qwen3ASREncoderConfig takes as they are.
_AUDIO_KEYS = ("num_mel_bins", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "d_model", "dropout",
               "attention_dropout", "activation_function", "activation_dropout", "scale_embedding",
               "initializer_range", "n_window", "output_dim", "n_window_infer", "downsample_hidden_size")
# The official text settings a transformers Qwen3 config takes as they are.
_TEXT_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps",
              "tie_word_embeddings", "attention_bias", "attention_dropout", "initializer_range")


@dataclasses.dataclass(frozen=True)
class LoadedCheckpoint:
    """What :func:`load_checkpoint` returns.

    Attributes:
        model: ``Qwen3ASRForConditionalGeneration`` in eval mode; audio encoder and projector float32, the
            LLM in the requested dtype.
        tokenizer: the Qwen2 tokenizer (transformers fast tokenizer).
        chat_template: the checkpoint's chat template (``chat_template.json``/``.jinja``, or the
            tokenizer's), which renders the system/user-audio/assistant prompt.
        layout: ``"official"`` or ``"hf"``.
        path: the folder it was loaded from.
        mrope_section: the thinker's multimodal-RoPE frequency split ``[t, h, w]`` (official
            ``text_config.rope_scaling.mrope_section``); ``None`` for an hf-layout folder, whose config
            no longer carries it.
        support_languages: the languages the config lists (official ``support_languages``), or ``()``.
        feature_config: ``preprocessor_config.json`` as a dict (``{}`` if absent).
    """

    model: Any
    tokenizer: Any
    chat_template: str | None
    layout: str
    path: str
    mrope_section: tuple[int, ...] | None = None
    support_languages: tuple[str, ...] = ()
    feature_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def read_config(path: str) -> dict | None:
    """``config.json`` of ``path`` as a dict, or ``None`` when there is none.

    Raises:
        CheckpointError: a ``config.json`` that is not a JSON object.
    """
    file = os.path.join(path, "config.json")
    return read_json_object(file) if os.path.isfile(file) else None


def detect_layout(path: str, config: Mapping[str, Any]) -> str:
    """``"official"`` (``thinker_config`` in ``config.json``) or ``"hf"``.

    Raises:
        CheckpointError: no safetensors file beside the config.
    """
    if not any(name.endswith(".safetensors") for name in os.listdir(path)):
        raise CheckpointError(f"{path}: a Qwen3-ASR config.json but no *.safetensors weights")
    return "official" if "thinker_config" in config else "hf"


# ----------------------------------------------------------------------------------------------------
# official layout: config


def encoder_positions_per_chunk(n_window: int) -> int:
    """Encoder positions one chunk of ``2 * n_window`` mel frames gives after the three stride-2
    convolutions (13 for the released ``n_window`` 50): the length of the encoder's sinusoidal table
    that is ever used."""
    length = 2 * n_window
    for _ in range(3):
        length = (length - 1) // 2 + 1
    return length


def _mrope_section(text: Mapping[str, Any], where: str) -> tuple[int, ...] | None:
    rope = text.get("rope_scaling") or {}
    if not isinstance(rope, Mapping):
        raise CheckpointError(f"{where}: text_config.rope_scaling must be an object, not {rope!r}")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "mrope"):
        raise CheckpointError(f"{where}: text_config.rope_scaling.rope_type {rope_type!r} is not supported "
                              "(Qwen3-ASR uses the default RoPE frequencies)")
    section = rope.get("mrope_section")
    if section is None:
        return None
    if not (isinstance(section, (list, tuple)) and section and all(isinstance(s, int) and s >= 0 for s in section)):
        raise CheckpointError(f"{where}: text_config.rope_scaling.mrope_section must be a list of non-negative "
                              f"integers, not {section!r}")
    head_dim = int(text.get("head_dim") or int(text["hidden_size"]) // int(text["num_attention_heads"]))
    if sum(section) > head_dim // 2:
        raise CheckpointError(f"{where}: mrope_section {list(section)} spans {sum(section)} frequencies, more than "
                              f"head_dim/2 = {head_dim // 2}")
    return tuple(section)


def hf_config_from_official(config: Mapping[str, Any], where: str = "config.json"):
    """A transformers ``Qwen3ASRConfig`` for an official ``config.json`` (parsed).

    The text model becomes a plain Qwen3 config (``rope_theta`` -> ``rope_parameters``; the multimodal
    section is dropped, see the module docstring); the audio encoder keeps its settings, its table
    sized :func:`encoder_positions_per_chunk`.

    Raises:
        CheckpointError: a missing sub-config, a forced-aligner checkpoint, or settings transformers
            cannot build.
    """
    from transformers import Qwen3ASRConfig

    thinker = config.get("thinker_config")
    if not isinstance(thinker, Mapping):
        raise CheckpointError(f"{where}: thinker_config must be an object")
    if "classify_num" in thinker:
        raise CheckpointError(f"{where}: this is a Qwen3 forced aligner (thinker_config.classify_num), not a "
                              "speech recognition model")
    audio, text = thinker.get("audio_config"), thinker.get("text_config")
    if not isinstance(audio, Mapping) or not isinstance(text, Mapping):
        raise CheckpointError(f"{where}: thinker_config needs audio_config and text_config objects")
    for key in ("hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size"):
        if key not in text:
            raise CheckpointError(f"{where}: thinker_config.text_config has no {key}")
    _mrope_section(text, where)  # checked here; kept by the loader
    audio_config = {"model_type": "qwen3_asr_encoder", **{k: audio[k] for k in _AUDIO_KEYS if k in audio}}
    n_window = int(audio_config.setdefault("n_window", 50))
    audio_config["max_position_embeddings"] = encoder_positions_per_chunk(n_window)
    text_config = {"model_type": "qwen3", **{k: text[k] for k in _TEXT_KEYS if k in text}}
    text_config["rope_parameters"] = {"rope_type": "default", "rope_theta": float(text.get("rope_theta", 5000000.0))}
    tie = bool(text.get("tie_word_embeddings", False))
    try:
        return Qwen3ASRConfig(audio_config=audio_config, text_config=text_config,
                              audio_token_id=int(thinker.get("audio_token_id", 151676)), tie_word_embeddings=tie)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{where} describes a model transformers cannot build: {error}") from error


# ----------------------------------------------------------------------------------------------------
# official layout: tensors


def official_key_to_hf(key: str) -> str | None:
    """The transformers name of an official tensor, or ``None`` for a name outside the map."""
    for old, new in OFFICIAL_PREFIXES:
        if key.startswith(old):
            return new + key[len(old):]
    return None


def hf_key_to_official(key: str) -> str:
    """Inverse of :func:`official_key_to_hf`.

    Raises:
        KeyError: a name without an official counterpart.
    """
    for old, new in OFFICIAL_PREFIXES:
        if key.startswith(new):
            return old + key[len(new):]
    raise KeyError(f"no official name for {key!r}")


def official_to_hf_state_dict(state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size],
                              tied: bool, where: str = "model.safetensors") -> dict[str, torch.Tensor]:
    """Convert official tensors (``thinker.*``) to transformers names, checking each against ``expected``
    (name -> shape of the target model).

    With ``tied`` word embeddings the output layer is the embedding table: a ``thinker.lm_head.weight``
    in the checkpoint (Qwen3-ASR-0.6B stores both) is checked for shape and otherwise dropped, as
    transformers' tying does in the reference.

    Raises:
        CheckpointError: listing missing tensors, unexpected tensors (leftovers the map does not know,
            e.g. a ``talker.*``) and shape mismatches by name.
    """
    check = KeyMapCheck(expected)
    for key, tensor in state_dict.items():
        check.add(key, official_key_to_hf(key), tensor)
    converted = check.result(where, optional=("lm_head.weight",) if tied else ())
    head = converted.pop("lm_head.weight", None) if tied else None
    if head is not None:
        embedding = state_dict.get("thinker.model.embed_tokens.weight")
        if embedding is not None and not torch.equal(embedding, head):
            logger.warning("%s: tie_word_embeddings is set but thinker.lm_head.weight differs from the embedding "
                           "table; the embedding table is used, as in the reference", where)
    return converted


def hf_to_official_state_dict(state_dict: Mapping[str, torch.Tensor], tied: bool) -> dict[str, torch.Tensor]:
    """Inverse of :func:`official_to_hf_state_dict`, for writing official-layout checkpoints. A tied
    output layer is written as its own copy of the embedding table, as Qwen3-ASR-0.6B ships it
    (safetensors refuses tensors that share memory)."""
    out = {hf_key_to_official(k): v for k, v in state_dict.items() if not (tied and k == "lm_head.weight")}
    if tied:
        out["thinker.lm_head.weight"] = out["thinker.model.embed_tokens.weight"].clone()
    return out


def new_model(config):
    """``Qwen3ASRForConditionalGeneration(config)`` without random initialisation (every tensor is
    replaced by the checkpoint's; the encoder's sinusoidal table is computed in its constructor)."""
    from transformers import Qwen3ASRForConditionalGeneration
    from transformers.initialization import no_init_weights

    with no_init_weights():
        return Qwen3ASRForConditionalGeneration(config)


def read_safetensors(path: str) -> dict[str, torch.Tensor]:
    """Every tensor of the ``*.safetensors`` files in folder ``path`` (sorted by file name), by name.

    Raises:
        CheckpointError: a file safetensors cannot read (its message included), a tensor stored twice.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files = sorted(n for n in os.listdir(path) if n.endswith(".safetensors"))
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        try:
            part = load_file(os.path.join(path, name))
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(f"{path}/{name} cannot be read: {error}") from error
        duplicated = set(part) & set(tensors)
        if duplicated:
            raise CheckpointError(f"{path}: tensors stored twice: {', '.join(sorted(duplicated)[:10])}")
        tensors.update(part)
    return tensors


def chat_template(path: str, tokenizer) -> str | None:
    """The folder's chat template: the processor's ``chat_template.json`` / ``chat_template.jinja`` (what
    qwen-asr renders), else the tokenizer's; ``None`` if neither has one.

    Raises:
        CheckpointError: a ``chat_template.json`` without a template.
    """
    for name in ("chat_template.json", "chat_template.jinja"):
        file = os.path.join(path, name)
        if os.path.isfile(file):
            with open(file, encoding="utf-8") as f:
                if name.endswith(".jinja"):
                    return f.read()
                try:
                    return json.load(f)["chat_template"]
                except (ValueError, KeyError, TypeError) as error:
                    raise CheckpointError(f"{file} holds no chat_template: {error}") from error
    return getattr(tokenizer, "chat_template", None)


def read_feature_config(path: str) -> dict:
    """The feature extractor settings of the checkpoint folder ``path`` (any layout):
    ``preprocessor_config.json`` (official), else the ``feature_extractor`` entry of ``processor_config.json``
    (what transformers writes); ``{}`` if neither.

    Raises:
        CheckpointError: a file that is not valid JSON.
    """
    for name, entry in (("preprocessor_config.json", None), ("processor_config.json", "feature_extractor")):
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            continue
        try:
            with open(file, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError) as error:
            raise CheckpointError(f"{file} is not valid JSON: {error}") from error
        if entry is not None:
            config = config.get(entry) if isinstance(config, dict) else None
        if isinstance(config, dict):
            return config
    return {}


def load_tokenizer(path: str):
    """The folder's tokenizer (transformers fast tokenizer).

    Raises:
        CheckpointError: it cannot be loaded.
    """
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as error:
        raise CheckpointError(f"{path}: cannot load the tokenizer: {error}") from error


def _load_official(path: str, config: Mapping[str, Any]):
    where = os.path.join(path, "config.json")
    hf_config = hf_config_from_official(config, where)
    section = _mrope_section(config["thinker_config"]["text_config"], where)
    model = new_model(hf_config)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    converted = official_to_hf_state_dict(read_safetensors(path), expected, bool(hf_config.tie_word_embeddings),
                                          where=f"{path} (safetensors)")
    model.load_state_dict(converted, strict=False, assign=True)
    if hf_config.tie_word_embeddings:
        model.tie_weights()
    languages = config.get("support_languages") or ()
    return model, section, tuple(str(x) for x in languages)


def load_hf_model(model_class, path: str):
    """``model_class.from_pretrained(path)`` in float32 (a transformers-layout folder), with missing,
    unexpected and mis-shaped tensors refused by name (:func:`raise_on_key_problems`).

    Raises:
        CheckpointError: transformers cannot load the folder, or its tensors do not fit.
    """
    try:
        model, info = model_class.from_pretrained(path, output_loading_info=True, dtype=torch.float32)
    except Exception as error:
        raise CheckpointError(f"{path}: cannot load the transformers checkpoint: {error}") from error
    mismatched = [f"{k}: checkpoint {a}, model {b}" for k, a, b in info.get("mismatched_keys", [])]
    raise_on_key_problems(list(info.get("missing_keys", [])), list(info.get("unexpected_keys", [])), mismatched, path)
    return model


def _load_hf(path: str):
    from transformers import Qwen3ASRForConditionalGeneration

    return load_hf_model(Qwen3ASRForConditionalGeneration, path)


def load_checkpoint(path: str, *, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> LoadedCheckpoint:
    """Load a Qwen3-ASR checkpoint folder in either layout.

    Args:
        path: checkpoint folder (official or transformers layout, told apart by ``thinker_config``).
        device: where to put the model.
        dtype: the LLM's dtype (``torch.float32``, ``torch.bfloat16`` or ``torch.float16``); the audio
            encoder and projector stay float32.

    Raises:
        CheckpointError: not a Qwen3-ASR folder, unreadable files, missing/unexpected/mis-shaped
            tensors, or an unsupported configuration.
    """
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype must be torch.float32, torch.bfloat16 or torch.float16, not {dtype}")
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: not a folder")
    config = read_config(path)
    if not config or config.get("model_type") != MODEL_TYPE:
        raise CheckpointError(f"{path}: not a Qwen3-ASR checkpoint (config.json model_type is not {MODEL_TYPE!r})")
    layout = detect_layout(path, config)
    section, languages = None, ()
    if layout == "official":
        model, section, languages = _load_official(path, config)
    else:
        model = _load_hf(path)
    tokenizer = load_tokenizer(path)
    model.eval().requires_grad_(False)
    model.to(device=device, dtype=torch.float32)
    model.model.language_model.to(dtype)
    model.lm_head.to(dtype)
    logger.info("loaded Qwen3-ASR %s checkpoint %s (LLM %s)", layout, path, dtype)
    return LoadedCheckpoint(model=model, tokenizer=tokenizer, chat_template=chat_template(path, tokenizer),
                            layout=layout, path=path, mrope_section=section, support_languages=languages,
                            feature_config=read_feature_config(path))
