"""Recognising a checkpoint folder from its file names and ``config.json`` alone: no torch, no weights read.

Each family's ``recognise`` (:class:`funasr_nano.models.family.Family`) is built from these, and so is the
one convention for the GGUF layout both families share (``funasr-nano export gguf``): ``config.json``
(``model_type``, ``llm_gguf`` naming the LLM file) + ``audio.safetensors`` (the audio encoder and projector
in torch) + the LLM as a ``.gguf`` file. A folder of the light runtime holds ONNX audio files instead of
``audio.safetensors`` (:func:`funasr_nano.models.onnx_audio.audio_onnx_file`).
"""

from __future__ import annotations

import os

from ..errors import CheckpointError
from .json_files import read_json_object

CONFIG = "config.json"
AUDIO_WEIGHTS = "audio.safetensors"  # the audio encoder + projector of a GGUF-layout folder (torch path)


def folder_names(path: str | os.PathLike) -> frozenset[str]:
    """The file names in ``path``; empty when it is no readable folder."""
    try:
        return frozenset(os.listdir(path))
    except OSError:
        return frozenset()


def read_model_type(path: str | os.PathLike) -> str | None:
    """``model_type`` of ``path/config.json``; ``None`` when the file is absent or unreadable, or holds no
    ``model_type`` (:func:`config_problem` says what is wrong with an unreadable one)."""
    file = os.path.join(path, CONFIG)
    if not os.path.isfile(file):
        return None
    try:
        value = read_json_object(file).get("model_type")
    except CheckpointError:
        return None
    return value if isinstance(value, str) else None


def config_problem(path: str | os.PathLike) -> str | None:
    """Why ``path/config.json`` cannot be read (not JSON, not an object), or ``None`` when it can or is absent."""
    file = os.path.join(path, CONFIG)
    if not os.path.isfile(file):
        return None
    try:
        read_json_object(file)
    except CheckpointError as error:
        return str(error)
    return None


def is_gguf_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is in the GGUF layout of the torch path: ``config.json`` + ``audio.safetensors`` + a
    ``.gguf`` file. Which family it belongs to is ``config.json``'s ``model_type`` (:func:`read_model_type`);
    which ``.gguf`` is the LLM, the family's loader reads from ``llm_gguf``."""
    names = folder_names(path)
    return CONFIG in names and AUDIO_WEIGHTS in names and any(name.endswith(".gguf") for name in names)
