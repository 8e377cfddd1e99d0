"""Checkpoint JSON files (``config.json``, shard indexes) read as objects, with errors naming the file; no torch,
so that the light runtime's loaders and the torch ones share it."""

from __future__ import annotations

import json

from ..errors import CheckpointError


def read_json_object(file: str) -> dict:
    """A checkpoint's JSON file (``config.json``, a shard index) as a dict.

    Raises:
        CheckpointError: the file cannot be read, is not JSON, or holds something else than an object.
    """
    try:
        with open(file, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{file} is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise CheckpointError(f"{file} must hold a JSON object")
    return value
