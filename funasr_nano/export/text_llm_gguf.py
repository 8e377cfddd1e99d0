"""``funasr-nano export gguf LLM_DIR OUT_DIR`` for a plain transformers causal LLM (a chat LLM to use as
cascade translator on llama.cpp: Qwen3 / Qwen2.5-style Qwen3 exports, Llama 3.x, Gemma 2).

OUT_DIR gets one file, ``<folder name>-<type>.gguf``: the LLM with its tokenizer and chat template, written
by the same architecture classes and key maps as the speech model's LLM
(:func:`funasr_nano.export.gguf.write_causal_lm_gguf`), so stock llama.cpp runs it too. A folder of one
GGUF without ``config.json`` is what :func:`funasr_nano.pipeline.translators.load_translator` takes as a
llama.cpp translator.
"""

from __future__ import annotations

import json
import logging
import os

from ..errors import CheckpointError
from .gguf import write_causal_lm_gguf
from .gguf_architectures import ARCHITECTURES, architecture_for

logger = logging.getLogger(__name__)


def causal_lm_model_type(path: str | os.PathLike) -> str | None:
    """The ``model_type`` of a transformers causal-LM folder (``config.json`` naming a ``*ForCausalLM``
    architecture), or ``None`` when ``path`` is not one (a speech model, a seq2seq model, no config)."""
    config_path = os.path.join(os.fspath(path), "config.json")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    architectures = config.get("architectures") or []
    if any(str(name).endswith("ForCausalLM") for name in architectures):
        return str(config.get("model_type"))
    return None


def export_text_llm_gguf(model_path: str | os.PathLike, out_dir: str | os.PathLike, out_type: str = "q8_0", *,
                         n_threads: int | None = None) -> str:
    """Export a transformers causal LLM folder (weights, tokenizer with its chat template) to
    ``OUT_DIR/<name>-<type>.gguf``.

    Returns:
        the path of the GGUF file.

    Raises:
        InvalidOptionError: an unknown ``out_type``, or ``out_dir`` is the source folder.
        CheckpointError: an architecture with no GGUF exporter (:data:`ARCHITECTURES`), unreadable
            weights or tokenizer, tensors that do not match the config.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .gguf_folder import output_folder

    source = os.path.abspath(os.fspath(model_path))
    out_dir = output_folder(source, out_dir, out_type)
    model_type = causal_lm_model_type(source)
    if model_type not in ARCHITECTURES:
        raise CheckpointError(f"{source}: GGUF export of a {model_type!r} causal LLM is not supported; "
                              f"supported: {', '.join(sorted(ARCHITECTURES))}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype="float32")
    except Exception as error:
        raise CheckpointError(f"{source}: cannot load the LLM ({type(error).__name__}: {error})") from error
    if not getattr(tokenizer, "chat_template", None):
        logger.warning("%s has no chat template: the GGUF cannot serve as a chat translator", source)
    architecture = architecture_for(model.config)
    os.makedirs(out_dir, exist_ok=True)
    name = os.path.basename(source.rstrip(os.sep))
    path = os.path.join(out_dir, f"{name}-{out_type}.gguf")
    state = dict(model.state_dict())
    write_causal_lm_gguf(architecture, state, tokenizer, path, out_type, name=name, n_threads=n_threads)
    logger.info("exported the %s LLM %s to %s", model_type, source, path)
    return path
