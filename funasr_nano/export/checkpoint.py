"""Writing a loaded (possibly fine-tuned) model back to disk as a checkpoint folder that
:func:`funasr_nano.load_model` loads: the official FunASR layout or the transformers layout, with the
writers of :mod:`funasr_nano.tiny`."""

from __future__ import annotations

import copy
import logging
import os

import yaml

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
    """Write ``loaded`` (a :class:`funasr_nano.checkpoint.LoadedCheckpoint`, or any object with
    ``model``, ``tokenizer``, ``layout`` and ``path``) to the folder ``path``.

    Args:
        layout: ``"official"`` (config.yaml + model.pt + LLM folder; needs an official-layout source for
            its config.yaml) or ``"hf"``; default: the source's layout.

    ``loaded.tasks`` (the tasks the model can do) is recorded as ``tasks`` in the written config.

    Raises:
        ValueError: an unknown layout, official output from a transformers-layout source, or a model
            that still holds LoRA layers (merge or strip them first, see :mod:`funasr_nano.lora`).
    """
    from ..models.lora import language_model, lora_layers
    from ..testing.tiny import write_hf, write_official

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
