"""Writing a loaded (possibly fine-tuned) model back to disk as a checkpoint folder that
:func:`funasr_nano.load_model` loads, in the official FunASR layout or the transformers layout."""

from __future__ import annotations

import copy
import json
import logging
import os

import torch
import yaml

from ..models.fun_asr_nano.checkpoint import hf_to_official_state_dict

logger = logging.getLogger(__name__)


def _official_config(source: str) -> dict:
    with open(os.path.join(source, "config.yaml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    cfg = copy.deepcopy(cfg)
    llm_conf = cfg.setdefault("llm_conf", {})
    # the written folder holds its own LLM folder, named after the source's
    llm_dir = os.path.basename(os.path.normpath(str(llm_conf.get("init_param_path", "Qwen3-0.6B")))) or "Qwen3-0.6B"
    llm_conf["init_param_path"] = llm_dir
    cfg.setdefault("tokenizer_conf", {})["init_param_path"] = llm_dir
    return cfg


def write_checkpoint(path: str, loaded, layout: str | None = None) -> str:
    """Write ``loaded`` (a :class:`funasr_nano.models.fun_asr_nano.checkpoint.LoadedCheckpoint`, or any object with
    ``model``, ``tokenizer``, ``layout`` and ``path``) to the folder ``path``.

    Args:
        layout: ``"official"`` (config.yaml + model.pt + LLM folder; needs an official-layout source for
            its config.yaml) or ``"hf"``; default: the source's layout.

    ``loaded.tasks`` (the tasks the model can do) is recorded as ``tasks`` in the written config.

    Raises:
        ValueError: an unknown layout, official output from a transformers-layout source, or a model
            that still holds LoRA layers (merge or strip them first, see :mod:`funasr_nano.models.lora`).
    """
    from ..models.lora import language_model, lora_layers

    layout = layout or loaded.layout
    if layout not in ("official", "hf"):
        raise ValueError(f"layout must be 'official' or 'hf', not {layout!r}")
    if any(True for _ in lora_layers(language_model(loaded.model))):
        raise ValueError("the model holds LoRA layers; merge or strip them before writing a checkpoint")
    tasks = list(getattr(loaded, "tasks", None) or ())
    if layout == "official":
        if loaded.layout != "official":
            raise ValueError("writing the official layout needs an official-layout source checkpoint "
                             f"(for its config.yaml); {loaded.path} is {loaded.layout}; use layout='hf'")
        cfg = _official_config(loaded.path)
        if tasks:
            cfg["tasks"] = tasks
        write_official(path, loaded.model, loaded.tokenizer, cfg)
    else:
        if tasks:
            loaded.model.config.tasks = tasks
        write_hf(path, loaded.model, loaded.tokenizer)
    logger.info("wrote %s-layout checkpoint %s", layout, path)
    return path


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
