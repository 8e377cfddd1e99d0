"""What a speech-LLM family hands to an engine: the LLM's prompt as token-id runs with audio embeddings
spliced in.

An :class:`LLMInput` is a sequence of *parts*: runs of token ids (the engine embeds them with the LLM's
own table) and runs of ready embeddings (the audio positions). A family (:class:`.base.FamilyModel`) builds
them; an engine (:class:`funasr_nano.engines.base.Engine`) decodes them, as vLLM's ``EmbedsPrompt`` or
llama.cpp's ``llama_batch.embd`` take them. Engines that can feed token ids directly (llama.cpp) never
materialise the text embeddings; the transformers engine concatenates.

No torch at import: the light runtime builds numpy parts.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np

if TYPE_CHECKING:
    import torch

# A part of an LLM input: token ids, or embeddings shaped ``(positions, hidden)`` (a torch tensor, or a
# numpy array on the light runtime, which has no torch).
Part = Union[Sequence[int], "torch.Tensor", np.ndarray]


def is_embedding(part: Part) -> bool:
    """Whether ``part`` is an embedding run (a tensor or array) rather than token ids."""
    return hasattr(part, "shape") and hasattr(part, "ndim")


@dataclasses.dataclass(frozen=True)
class LLMInput:
    """One prompt for the LLM.

    Attributes:
        parts: token-id runs and embedding runs (``(n, hidden)`` float tensors or numpy arrays), in
            prompt order.
        adapter: the LoRA adapter this row runs with (``None``: the base weights). Rows of one batch
            may use different adapters.
    """

    parts: tuple[Part, ...]
    adapter: str | None = None

    @property
    def length(self) -> int:
        """Number of positions."""
        return sum(part.shape[0] if is_embedding(part) else len(part) for part in self.parts)
