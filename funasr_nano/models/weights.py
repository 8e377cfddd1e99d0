"""Weight checks and the audio-only module shared by the families' loaders.

Every loader matches stored tensors to the model by name and shape and refuses what does not fit, naming
it (:func:`raise_on_key_problems`); a GGUF-layout folder keeps the audio encoder and projector in torch
(``audio.safetensors``) beside the LLM's GGUF file (:class:`AudioModel`, :func:`load_audio_weights`).
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import torch

from ..errors import CheckpointError
from .json_files import read_json_object  # noqa: F401  (re-exported: the torch-side loaders read it here)
from .recognise import AUDIO_WEIGHTS  # noqa: F401  (re-exported: the GGUF layout's audio file, named once)

AUDIO_PREFIXES = ("model.audio_tower.", "model.multi_modal_projector.")


def raise_on_key_problems(missing, unexpected, mismatched, where: str) -> None:
    """Raise :class:`CheckpointError` naming missing, unexpected and mis-shaped tensors (the first 30 of
    each kind); return when there are none."""
    if not (missing or unexpected or mismatched):
        return
    parts = []
    for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if keys:
            shown = ", ".join(sorted(keys)[:30]) + (f", ... ({len(keys)} in all)" if len(keys) > 30 else "")
            parts.append(f"{title}: {shown}")
    raise CheckpointError(f"{where} does not match the model; " + "; ".join(parts))


class KeyMapCheck:
    """Tensors matched to a model one by one under an explicit key map, then checked as a whole: what
    :func:`raise_on_key_problems` reports, gathered once for every loader.

    Args:
        expected: the model's tensors, name -> shape.

    Use: :meth:`add` each stored tensor under the model name the key map gives it (``None``: the map does
    not know it), then :meth:`result`.
    """

    def __init__(self, expected: Mapping[str, Sequence[int]]):
        self.expected = expected
        self.converted: dict[str, torch.Tensor] = {}
        self.unexpected: list[str] = []
        self.mismatched: list[str] = []

    def add(self, key: str, name: str | None, tensor: torch.Tensor) -> None:
        """The stored tensor ``key`` as the model's ``name``: kept when the model has a tensor of that name
        and shape, else noted as unexpected or mis-shaped."""
        if name is None or name not in self.expected:
            self.unexpected.append(key)
        elif tuple(tensor.shape) != tuple(self.expected[name]):
            self.mismatched.append(f"{key} -> {name}: checkpoint {tuple(tensor.shape)}, "
                                   f"model {tuple(self.expected[name])}")
        else:
            self.converted[name] = tensor

    def result(self, where: str, optional: Sequence[str] = ()) -> dict[str, torch.Tensor]:
        """The tensors kept, by model name.

        Args:
            where: the file, for the message.
            optional: model tensors that may be absent (a tied ``lm_head.weight``).

        Raises:
            CheckpointError: missing, unexpected or mis-shaped tensors (:func:`raise_on_key_problems`).
        """
        missing = [name for name in self.expected if name not in self.converted and name not in optional]
        raise_on_key_problems(missing, self.unexpected, self.mismatched, where)
        return self.converted


class AudioModel(torch.nn.Module):
    """The audio encoder and projector of a speech LLM, with the module paths of its transformers class
    (``model.audio_tower``, ``model.multi_modal_projector``) and its ``config``, without the LLM.

    Args:
        config: the family's transformers config (with ``audio_config``).
        projector: the family's projector class, called with ``config``.
    """

    def __init__(self, config, projector: Callable[[object], torch.nn.Module]):
        from transformers import AutoModel
        from transformers.initialization import no_init_weights

        super().__init__()
        self.config = config
        self.model = torch.nn.Module()
        with no_init_weights():  # every tensor is overwritten by the checkpoint right after
            self.model.audio_tower = AutoModel.from_config(config.audio_config)
            self.model.multi_modal_projector = projector(config)


def load_audio_weights(model: AudioModel, path: str) -> None:
    """Load ``path/audio.safetensors`` into ``model``, every tensor matched by name and shape.

    Raises:
        CheckpointError: an unreadable file, or missing/unexpected/mis-shaped tensors (listed).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        stored = load_file(os.path.join(path, AUDIO_WEIGHTS))
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"{path}/{AUDIO_WEIGHTS} cannot be read: {error}") from error
    expected = {k: v.shape for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    mismatched = [f"{k}: checkpoint {tuple(v.shape)}, model {tuple(expected[k])}"
                  for k, v in stored.items() if k in expected and tuple(v.shape) != tuple(expected[k])]
    raise_on_key_problems(missing, unexpected, mismatched, f"{path}/{AUDIO_WEIGHTS}")
    model.load_state_dict(stored, assign=True)
