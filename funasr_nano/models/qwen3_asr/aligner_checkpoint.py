"""Checkpoint loading for Qwen3-ForcedAligner: the official layout and the transformers layout -> one
model definition.

Qwen3-ForcedAligner-0.6B is Qwen3-ASR's network (AuT audio encoder, projector, Qwen3 LLM) whose output
layer is a classifier over ``classify_num`` time bins instead of the vocabulary. The model definition is
transformers' ``Qwen3ASRForTokenClassification`` (``model``: the ``Qwen3ASRModel`` of Qwen3-ASR;
``score``: the classifier, without bias). Two folder layouts load into it:

* **official** (``Qwen/Qwen3-ForcedAligner-0.6B``, read by ``qwen-asr``'s ``Qwen3ForcedAligner``):
  ``config.json`` with ``model_type: qwen3_asr``, ``timestamp_token_id`` (151705, ``<timestamp>``) and
  ``timestamp_segment_time`` (80: milliseconds per bin) at the top, and a ``thinker_config`` whose
  ``model_type`` holds ``forced_aligner`` (qwen-asr's switch to the classifier head,
  ``Qwen3ASRThinkerForConditionalGeneration.__init__``) and whose ``classify_num`` (5000) sizes it;
  ``*.safetensors`` with ``thinker.audio_tower.*``, ``thinker.model.*`` and ``thinker.lm_head.weight``
  ``(classify_num, hidden)``; the Qwen2 tokenizer files and ``preprocessor_config.json`` as Qwen3-ASR's.
  Tensors are mapped by :func:`official_to_hf_state_dict`, which checks every shape and refuses leftovers.
* **hf** (what ``Qwen3ASRForTokenClassification.save_pretrained`` writes): ``config.json`` with
  ``architectures: [Qwen3ASRForTokenClassification]``, ``num_labels`` bins and ``timestamp_token_id``;
  ``model.*`` and ``score.weight`` tensors; the processor's files (``timestamp_segment_time`` in
  ``processor_config.json``, 80 ms when absent, as transformers' ``Qwen3ASRProcessor`` defaults).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Mapping

import torch

from ...errors import CheckpointError
from ..weights import KeyMapCheck, read_json_object
from . import checkpoint as asr_checkpoint

logger = logging.getLogger(__name__)

HF_ARCHITECTURE = "Qwen3ASRForTokenClassification"
OFFICIAL_HEAD = "thinker.lm_head.weight"
HF_HEAD = "score.weight"
# transformers' Qwen3ASRProcessor default (milliseconds per time bin)
DEFAULT_SEGMENT_TIME = 80.0


@dataclasses.dataclass(frozen=True)
class LoadedAligner:
    """What :func:`load_aligner` returns.

    Attributes:
        model: ``Qwen3ASRForTokenClassification`` in eval mode; audio encoder and projector float32, the
            LLM and classifier in the requested dtype.
        tokenizer: the Qwen2 tokenizer (transformers fast tokenizer).
        layout: ``"official"`` or ``"hf"``.
        path: the folder it was loaded from.
        timestamp_token_id: the id of ``<timestamp>``, the slots the classifier reads.
        timestamp_segment_time: milliseconds per time bin (80).
        classify_num: the number of time bins (5000: 400 s).
        feature_config: ``preprocessor_config.json`` as a dict (``{}`` if absent).
    """

    model: Any
    tokenizer: Any
    layout: str
    path: str
    timestamp_token_id: int
    timestamp_segment_time: float
    classify_num: int
    feature_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _number(config: Mapping[str, Any], key: str, where: str, kind: type) -> Any:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or \
            (kind is int and int(value) != value):
        raise CheckpointError(f"{where}: {key} must be a positive {kind.__name__}, not {value!r}")
    return kind(value)


def hf_config_from_official(config: Mapping[str, Any], where: str = "config.json"):
    """A transformers ``Qwen3ASRConfig`` for ``Qwen3ASRForTokenClassification`` from an official
    forced-aligner ``config.json`` (parsed): the network as Qwen3-ASR's
    (:func:`.checkpoint.hf_config_from_official`, untied), ``num_labels`` = ``classify_num``, the
    ``timestamp_token_id``, a classifier without bias.

    Raises:
        CheckpointError: not a forced aligner (no ``thinker_config.classify_num``, or a
            ``thinker_config.model_type`` without ``forced_aligner``), or settings transformers cannot build.
    """
    thinker = config.get("thinker_config")
    if not isinstance(thinker, Mapping):
        raise CheckpointError(f"{where}: thinker_config must be an object")
    if "classify_num" not in thinker:
        raise CheckpointError(f"{where}: no thinker_config.classify_num: this is a Qwen3-ASR speech recognition "
                              "checkpoint, not Qwen3-ForcedAligner")
    if "forced_aligner" not in str(thinker.get("model_type", "")):
        raise CheckpointError(f"{where}: thinker_config.model_type is {thinker.get('model_type')!r}; a "
                              "Qwen3-ForcedAligner checkpoint says 'qwen3_forced_aligner'")
    classify_num = _number(thinker, "classify_num", f"{where}: thinker_config", int)
    timestamp_token_id = _number(config, "timestamp_token_id", where, int)
    _number(config, "timestamp_segment_time", where, float)
    network = {key: value for key, value in thinker.items() if key not in ("classify_num", "model_type")}
    asr_config = asr_checkpoint.hf_config_from_official({**config, "thinker_config": network}, where)
    values = asr_config.to_dict()
    values.update(num_labels=classify_num, timestamp_token_id=timestamp_token_id, token_classification_bias=False,
                  tie_word_embeddings=False, architectures=[HF_ARCHITECTURE])
    values.pop("id2label", None), values.pop("label2id", None)
    try:
        return type(asr_config)(**values)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{where} describes a model transformers cannot build: {error}") from error


def official_key_to_hf(key: str) -> str | None:
    """The transformers name of an official aligner tensor (``thinker.lm_head.weight`` -> ``score.weight``,
    the rest as Qwen3-ASR's map), or ``None`` outside the map."""
    if key == OFFICIAL_HEAD:
        return HF_HEAD
    name = asr_checkpoint.official_key_to_hf(key)
    return None if name is None or name.startswith("lm_head.") else name


def official_to_hf_state_dict(state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size],
                              where: str) -> dict[str, torch.Tensor]:
    """Convert official tensors to transformers names, checking each against ``expected`` (name -> shape).

    Raises:
        CheckpointError: listing missing, unexpected and mis-shaped tensors by name.
    """
    check = KeyMapCheck(expected)
    for key, tensor in state_dict.items():
        check.add(key, official_key_to_hf(key), tensor)
    return check.result(where)


def hf_to_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`official_to_hf_state_dict`, for writing official-layout checkpoints."""
    return {OFFICIAL_HEAD if key == HF_HEAD else asr_checkpoint.hf_key_to_official(key): value
            for key, value in state_dict.items()}


def new_model(config):
    """``Qwen3ASRForTokenClassification(config)`` without random initialisation."""
    from transformers import Qwen3ASRForTokenClassification
    from transformers.initialization import no_init_weights

    with no_init_weights():
        return Qwen3ASRForTokenClassification(config)


def _segment_time_hf(path: str) -> float:
    file = os.path.join(path, "processor_config.json")
    if not os.path.isfile(file):
        return DEFAULT_SEGMENT_TIME
    config = read_json_object(file)
    if "timestamp_segment_time" not in config:
        return DEFAULT_SEGMENT_TIME
    return _number(config, "timestamp_segment_time", file, float)


def _load_official(path: str, config: Mapping[str, Any]):
    where = os.path.join(path, "config.json")
    model = new_model(hf_config_from_official(config, where))
    expected = {key: value.shape for key, value in model.state_dict().items()}
    converted = official_to_hf_state_dict(asr_checkpoint.read_safetensors(path), expected, f"{path} (safetensors)")
    model.load_state_dict(converted, strict=False, assign=True)
    return model, float(config["timestamp_segment_time"])


def _load_hf(path: str):
    from transformers import Qwen3ASRForTokenClassification

    return asr_checkpoint.load_hf_model(Qwen3ASRForTokenClassification, path), _segment_time_hf(path)


def load_aligner(path: str | os.PathLike, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> LoadedAligner:
    """Load a Qwen3-ForcedAligner checkpoint folder in either layout.

    Args:
        path: checkpoint folder (official: ``thinker_config`` in ``config.json``; transformers:
            ``architectures: [Qwen3ASRForTokenClassification]``).
        device: where to put the model.
        dtype: the LLM's and classifier's dtype; the audio encoder and projector stay float32.

    Raises:
        CheckpointError: naming the file: no folder, no ``config.json``, not a forced aligner (a Qwen3-ASR
            or other checkpoint), no ``*.safetensors``, unreadable files, missing/unexpected/mis-shaped
            tensors, a tokenizer without ``<timestamp>``.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: no such folder (a Qwen3-ForcedAligner checkpoint folder, e.g. "
                              "Qwen3-ForcedAligner-0.6B)")
    file = os.path.join(path, "config.json")
    if not os.path.isfile(file):
        raise CheckpointError(f"{file}: no such file; a Qwen3-ForcedAligner folder holds config.json, "
                              "model.safetensors and the tokenizer files")
    config = read_json_object(file)
    if config.get("model_type") != asr_checkpoint.MODEL_TYPE:
        raise CheckpointError(f"{file}: model_type is {config.get('model_type')!r}, not a Qwen3-ForcedAligner "
                              f"checkpoint (model_type {asr_checkpoint.MODEL_TYPE!r} with a classify_num)")
    if not any(name.endswith(".safetensors") for name in os.listdir(path)):
        raise CheckpointError(f"{path}: a Qwen3-ForcedAligner config.json but no *.safetensors weights "
                              "(model.safetensors)")
    if "thinker_config" in config:
        layout = "official"
        model, segment_time = _load_official(path, config)
    elif HF_ARCHITECTURE in (config.get("architectures") or ()):
        layout = "hf"
        model, segment_time = _load_hf(path)
    else:
        raise CheckpointError(f"{file}: neither an official Qwen3-ForcedAligner config (thinker_config with "
                              f"classify_num) nor a transformers one (architectures [{HF_ARCHITECTURE}]); "
                              "a Qwen3-ASR speech recognition checkpoint is not an aligner")
    tokenizer = asr_checkpoint.load_tokenizer(path)
    timestamp_id = int(model.config.timestamp_token_id)
    if tokenizer.convert_ids_to_tokens(timestamp_id) != "<timestamp>":
        raise CheckpointError(f"{path}: the tokenizer has {tokenizer.convert_ids_to_tokens(timestamp_id)!r} at "
                              f"timestamp_token_id {timestamp_id}, not <timestamp>")
    model.eval().requires_grad_(False)
    model.to(device=device, dtype=torch.float32)
    model.model.language_model.to(dtype)
    model.score.to(dtype)
    logger.info("loaded Qwen3-ForcedAligner %s checkpoint %s (%d bins of %g ms)", layout, path,
                model.config.num_labels, segment_time)
    return LoadedAligner(model=model, tokenizer=tokenizer, layout=layout, path=path, timestamp_token_id=timestamp_id,
                         timestamp_segment_time=segment_time, classify_num=int(model.config.num_labels),
                         feature_config=asr_checkpoint.read_feature_config(path))

