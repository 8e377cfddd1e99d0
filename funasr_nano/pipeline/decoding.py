"""Decoding: options, the repetition guard, and FunASR's text post-processing.

FunASR decodes greedily with ``transformers`` ``generate`` (``FunASRNano.inference_llm``): up to
``max_length`` (512) new tokens, stopping at the LLM's end-of-sequence token, which for Qwen3 is
``<|im_end|>``; the text is ``tokenizer.decode(ids, skip_special_tokens=True)`` with ``/sil`` removed
and whitespace runs folded to one space.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Sequence

import torch

logger = logging.getLogger(__name__)

END_OF_TURN = "<|im_end|>"


@dataclasses.dataclass(frozen=True)
class DecodingOptions:
    """How the LLM generates text.

    Attributes:
        max_new_tokens: upper bound on generated tokens (FunASR's ``max_length``, 512).
        num_beams: 1 = greedy search (FunASR's default); > 1 = beam search.
        min_new_tokens: end-of-turn is suppressed before this many tokens (0 = never; benchmarks use
            it to generate a fixed number of tokens).
        repetition_guard: stop a looping output: when the last tokens are one n-gram (n <=
            ``guard_max_ngram``) repeated at least ``guard_min_repeats`` times over at least
            ``guard_min_tokens`` tokens, generation stops and the repeats are cut to one copy.
            FunASR has no such guard; it only changes output that was looping anyway.
    """

    max_new_tokens: int = 512
    num_beams: int = 1
    min_new_tokens: int = 0
    repetition_guard: bool = True
    guard_max_ngram: int = 32
    guard_min_repeats: int = 4
    guard_min_tokens: int = 24

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(f"min_new_tokens must be in [0, max_new_tokens], got {self.min_new_tokens}")
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {self.num_beams}")
        if self.guard_min_repeats < 2 or self.guard_max_ngram < 1:
            raise ValueError("guard_min_repeats must be >= 2 and guard_max_ngram >= 1")


def repeated_tail(tokens: Sequence[int], options: DecodingOptions) -> tuple[int, int] | None:
    """If ``tokens`` ends in a loop, return ``(period, repeats)``, else ``None``.

    A loop is the same ``period``-token n-gram repeated ``repeats`` >= ``guard_min_repeats`` times at
    the end, spanning >= ``guard_min_tokens`` tokens. The shortest period wins.
    """
    n = len(tokens)
    for period in range(1, min(options.guard_max_ngram, n // options.guard_min_repeats) + 1):
        repeats = 1
        while (repeats + 1) * period <= n and list(tokens[n - (repeats + 1) * period : n - repeats * period]) == list(
            tokens[n - period :]
        ):
            repeats += 1
        if repeats >= options.guard_min_repeats and repeats * period >= options.guard_min_tokens:
            return period, repeats
    return None


def cut_repetition(tokens: Sequence[int], options: DecodingOptions) -> list[int]:
    """``tokens`` with a looping tail (see :func:`repeated_tail`) cut down to one copy of the n-gram."""
    tokens = list(tokens)
    loop = repeated_tail(tokens, options)
    if loop is None:
        return tokens
    period, repeats = loop
    logger.warning("output looped (%d-token pattern x %d); cut to one copy", period, repeats)
    return tokens[: len(tokens) - (repeats - 1) * period]


class RepetitionStoppingCriteria:
    """``transformers`` stopping criterion: True for sequences whose tail loops (see
    :func:`repeated_tail`). Checks only the generated tokens (``input_ids`` holds only those when
    generating from ``inputs_embeds``).

    ``stopped_at`` maps a batch row to its length when it first looped: in a batch, ``generate`` fills
    a stopped row with padding until the other rows end, and the caller cuts it there. One instance
    per ``generate`` call (it records that call's rows).
    """

    def __init__(self, options: DecodingOptions):
        self.options = options
        self.stopped_at: dict[int, int] = {}

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        done = []
        for index, row in enumerate(input_ids):
            if index in self.stopped_at:
                done.append(True)
                continue
            looped = repeated_tail(row.tolist(), self.options) is not None
            if looped:
                self.stopped_at[index] = row.shape[0]
            done.append(looped)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def postprocess_text(text: str) -> str:
    """FunASR's post-processing of decoded text: ``/sil`` markers removed, whitespace runs folded."""
    return re.sub(r"\s+", " ", text.replace("/sil", " "))
