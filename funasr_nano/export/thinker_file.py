"""The thinker's GGUF file in a Qwen3-ASR GGUF-layout folder: its multimodal-RoPE sections, checked
against the folder's ``config.json`` before llama.cpp runs it. Needs only the ``gguf`` package (no torch),
so that both the torch path (:mod:`.gguf_layout`) and the light runtime (:mod:`.light`) check it; the
file is written by :mod:`funasr_nano.export.thinker_gguf`.
"""

from __future__ import annotations

import os
from typing import Sequence

from ..errors import CheckpointError
from .gguf import check_gguf_file, import_gguf


def padded_sections(mrope_section: Sequence[int]) -> list[int]:
    """``mrope_section`` as ``rope.dimension_sections`` holds it: four entries, zero-padded."""
    section = [int(v) for v in mrope_section]
    if len(section) > 4:
        raise CheckpointError(f"mrope_section {section} has more than four entries")
    return section + [0] * (4 - len(section))


def gguf_sections(path: str | os.PathLike) -> list[int] | None:
    """The ``rope.dimension_sections`` of a GGUF file's architecture (``None`` when it has none)."""
    gguf = import_gguf()
    metadata = check_gguf_file(path)
    arch = metadata.get(gguf.Keys.General.ARCHITECTURE)
    value = metadata.get(gguf.Keys.Rope.DIMENSION_SECTIONS.format(arch=arch))
    return list(value) if value is not None else None


def check_thinker_gguf(path: str | os.PathLike, mrope_section: Sequence[int] | None) -> str:
    """Check that a thinker GGUF file carries the LLM's M-RoPE sections: a ``qwen3vl`` file must hold
    ``mrope_section`` (padded to four) in ``qwen3vl.rope.dimension_sections``; a ``qwen3`` file needs
    none (plain RoPE). Returns the file's architecture.

    Raises:
        CheckpointError: a ``qwen3vl`` file without sections or with other sections, or another
            architecture.
    """
    gguf = import_gguf()
    metadata = check_gguf_file(path)
    arch = metadata.get(gguf.Keys.General.ARCHITECTURE)
    if arch == "qwen3":
        return arch
    if arch != "qwen3vl":
        raise CheckpointError(f"{path}: architecture {arch!r} is not a Qwen3-ASR LLM (qwen3vl or qwen3)")
    stored = gguf_sections(path)
    if stored is None:
        raise CheckpointError(f"{path}: a qwen3vl file without rope.dimension_sections")
    if mrope_section is not None and stored != padded_sections(mrope_section):
        raise CheckpointError(f"{path}: rope.dimension_sections {stored} differ from the LLM's mrope_section "
                              f"{list(mrope_section)} (expected {padded_sections(mrope_section)})")
    return arch


def check_model_gguf(path: str | os.PathLike, model) -> str:
    """:func:`check_thinker_gguf` against a loaded Qwen3-ASR model's ``mrope_section`` (torch or light
    runtime): the ``check_llm_gguf`` hook of the Qwen3-ASR family (:mod:`funasr_nano.models.qwen3_asr.family`)."""
    return check_thinker_gguf(path, model.mrope_section)
