"""The registered speech-LLM families, in the order they are asked to recognise a folder: the only place that
lists them. A built-in family is one line below; another is added with :func:`register` (and taken away with
:func:`unregister`), without editing loading, export or the CLI, which consult :func:`family_for`.

Families registered at run time are asked before the built-ins, so a more specific family (a marker file
beside a Fun-ASR-Nano checkpoint) wins over the broader built-in one.
"""

from __future__ import annotations

import os

from ..errors import CheckpointError
from .family import Family
from .fun_asr_nano.family import FAMILY as FUN_ASR_NANO
from .qwen3_asr.family import FAMILY as QWEN3_ASR
from .recognise import config_problem, folder_names

_FAMILIES: list[Family] = [
    FUN_ASR_NANO,   # config.yaml + model.pt, or config.json model_type fun_asr_nano (transformers, GGUF, light)
    QWEN3_ASR,      # config.json model_type qwen3_asr (official, transformers, GGUF, light)
]


def families() -> tuple[Family, ...]:
    """The registered families, in the order they are asked."""
    return tuple(_FAMILIES)


def register(family: Family) -> None:
    """Add ``family``, asked before those registered earlier.

    Raises:
        ValueError: a family of that name is registered already.
    """
    if any(known.name == family.name for known in _FAMILIES):
        raise ValueError(f"a family named {family.name!r} is registered already")
    _FAMILIES.insert(0, family)


def unregister(name: str) -> Family:
    """Remove the family called ``name`` and return it.

    Raises:
        KeyError: no such family.
    """
    for index, family in enumerate(_FAMILIES):
        if family.name == name:
            return _FAMILIES.pop(index)
    raise KeyError(f"no family named {name!r}; registered: {', '.join(f.name for f in _FAMILIES)}")


def get(name: str) -> Family:
    """The family called ``name``.

    Raises:
        KeyError: no such family.
    """
    for family in _FAMILIES:
        if family.name == name:
            return family
    raise KeyError(f"no family named {name!r}; registered: {', '.join(f.name for f in _FAMILIES)}")


def find_family(path: str | os.PathLike) -> Family | None:
    """The first family that recognises the folder ``path``, else ``None``."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return None
    return next((family for family in _FAMILIES if family.recognise(path)), None)


def family_for(path: str | os.PathLike) -> Family:
    """The family of the checkpoint folder ``path``.

    Raises:
        CheckpointError: ``path`` is no folder, or no family recognises it (the message names each
            family and what it looks for, the folder's files, and a ``config.json`` that cannot be read).
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: not a folder")
    family = find_family(path)
    if family is not None:
        return family
    expected = ", ".join(f"not a {f.title} checkpoint (expected {f.layouts})" for f in _FAMILIES)
    problem = config_problem(path)
    raise CheckpointError(f"{path}: {expected}; found {sorted(folder_names(path))[:20]}"
                          + (f"; {problem}" if problem else "")
                          + f" (known families: {', '.join(f.name for f in _FAMILIES)})")
