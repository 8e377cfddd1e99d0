"""Merging a LoRA adapter into its base: a standalone checkpoint, ``W' = W + (lora_alpha / r) * B @ A``
(Hu et al. 2021, arXiv:2106.09685, eq. 3)."""

from __future__ import annotations

import logging

from ..models.fun_asr_nano.checkpoint import load_checkpoint
from ..models.lora import load_adapter, merge_adapter
from .checkpoint import write_checkpoint

logger = logging.getLogger(__name__)


def merge_checkpoint(base: str, adapter: str, output: str, layout: str | None = None) -> str:
    """Write a standalone checkpoint to ``output``: the ``base`` checkpoint with the LoRA ``adapter``
    merged into its LLM weights. ``layout`` defaults to the base's (``official`` or ``hf``).
    Returns ``output``."""
    loaded = load_checkpoint(base)
    load_adapter(loaded.model, adapter, "merge")
    count = merge_adapter(loaded.model, "merge")
    logger.info("merged %d LoRA layers of %s into %s", count, adapter, base)
    write_checkpoint(output, loaded, layout=layout)
    return output
