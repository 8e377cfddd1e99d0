"""The engine seam: what turns a speech LLM's prompt (token ids with audio embeddings spliced in) into
generated token ids.

Everything model-specific stays out of the engines (features, encoder, adaptor, prompt, chat format,
repetition guard, text post-processing, in :mod:`funasr_nano.models` and :mod:`funasr_nano.pipeline`);
an engine only runs the causal LLM, as vLLM's ``EmbedsPrompt`` or llama.cpp's ``llama_batch.embd`` do.

An engine decodes :class:`~funasr_nano.models.llm_input.LLMInput` rows (defined with the families, which
build them; imported here as part of the engine API): runs of token ids, which the engine embeds with the
LLM's own table, and runs of ready embeddings (the audio positions).
"""

from __future__ import annotations

import abc
import threading
from typing import TYPE_CHECKING, Callable, Sequence

from ..models.llm_input import LLMInput, is_embedding  # the engine API's input type (built by the families)
from ..options import DecodingOptions

if TYPE_CHECKING:
    import torch

# Called after each generated token of a row that is still running, with the row's index in the batch
# and every token it generated so far (stop tokens excluded). Returning ``True`` stops that row now.
OnToken = Callable[[int, Sequence[int]], bool]


def embed_parts(llm_input: LLMInput, table: "torch.nn.Module") -> "torch.Tensor":
    """``(length, hidden)`` input embeddings of one row: token runs through ``table`` (the LLM's input
    embedding module, ``(vocab, hidden)`` weight), embedding runs as given; all in the table's device and
    dtype.

    Raises:
        ValueError: an embedding part that is not ``(n, hidden)``.
    """
    import torch

    weight = table.weight
    hidden = weight.shape[1]
    pieces = []
    for part in llm_input.parts:
        if is_embedding(part):
            part = torch.as_tensor(part)
            if part.ndim != 2 or part.shape[1] != hidden:
                raise ValueError(f"an embedding part must be (n, {hidden}), got {tuple(part.shape)}")
            pieces.append(part.to(weight.device, weight.dtype))
        else:
            pieces.append(table(torch.tensor(list(part), dtype=torch.long, device=weight.device)))
    return torch.cat(pieces)


class GeneratedTokens(list):
    """The token ids one row generated (a ``list`` of ``int``, stop token excluded), with their
    log-probabilities under the LLM when the engine reports them.

    Attributes:
        logprobs: the natural-log probability of each generated token in the distribution it was
            chosen from (after temperature), then of the stop token when the row ended on one (so
            ``len(tokens)`` or ``len(tokens) + 1`` values); ``None`` when the engine does not report them.
    """

    def __init__(self, tokens: Sequence[int] = (), logprobs: Sequence[float] | None = None):
        super().__init__(tokens)
        self.logprobs = None if logprobs is None else tuple(float(v) for v in logprobs)

    def cut(self, length: int) -> "GeneratedTokens":
        """The first ``length`` tokens with their log-probabilities (the stop token's dropped)."""
        return GeneratedTokens(self[:length], None if self.logprobs is None else self.logprobs[:length])

    @property
    def avg_logprob(self) -> float | None:
        """The mean log-probability (whisper's ``avg_logprob`` counts the end-of-text token too), or
        ``None``."""
        if not self.logprobs:
            return None
        return sum(self.logprobs) / len(self.logprobs)


class Engine(abc.ABC):
    """Decodes :class:`LLMInput` batches into token ids.

    Implementations must be safe to call from several threads at once (calls may be serialised
    inside), and must honour, per call: ``options.max_new_tokens``, ``options.min_new_tokens``,
    ``options.temperature`` (0 = greedy), the stop tokens given at construction, ``on_token`` after
    every token of every running row, and ``cancel`` within one token.
    """

    #: short name used in logs and on the command line (``transformers``, ``llama.cpp``, ...)
    name: str = "engine"
    #: whether concurrent ``generate`` calls join one running batch at the next decoding step inside
    #: the engine (continuous batching); the server's batching scheduler then passes calls straight through
    continuous_batching: bool = False

    def __init__(self, stop_token_ids: Sequence[int]):
        if not stop_token_ids:
            raise ValueError("an engine needs at least one stop token id")
        self.stop_token_ids = tuple(sorted(set(int(t) for t in stop_token_ids)))

    @property
    @abc.abstractmethod
    def hidden_size(self) -> int:
        """Width of the LLM's input embeddings."""

    @property
    @abc.abstractmethod
    def max_positions(self) -> int:
        """The longest prompt + generation the LLM takes (its context window)."""

    @property
    def supports_beam_search(self) -> bool:
        return False

    @abc.abstractmethod
    def generate(
        self,
        inputs: Sequence[LLMInput],
        options: DecodingOptions,
        *,
        on_token: OnToken | None = None,
        cancel: threading.Event | None = None,
    ) -> list[list[int]]:
        """Generate a continuation for every input.

        Every row decodes as it would alone (batching must not change tokens, up to floating-point
        ties). A row ends at a stop token, at ``options.max_new_tokens``, when ``on_token`` returns
        ``True`` for it, or when ``cancel`` is set.

        Returns:
            per input, the generated token ids, stop token excluded (engines that report
            log-probabilities return :class:`GeneratedTokens`).

        Raises:
            ValueError: options this engine cannot honour (e.g. beam search on llama.cpp).
        """

    def close(self) -> None:
        """Release native resources (nothing for pure-torch engines)."""
