"""The next token of a row from its logits, with the token's log-probability: greedy or sampled, in
numpy (the llama.cpp engine; the transformers engine gets the same from ``generate``'s scores).

The log-probability is the chosen token's in the distribution it was picked from, as the transformers
engine records it (:class:`funasr_nano.engines.base.GeneratedTokens`): ``log_softmax`` of the logits
over the whole vocabulary, after ``min_new_tokens`` masked the stop tokens and after the temperature
(``logits / temperature`` when sampling; the raw logits when greedy).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..options import DecodingOptions


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """``(vocab,)`` scores -> ``(vocab,)`` float64 log-probabilities, computed stably: the maximum is
    subtracted before ``exp``, so large logits neither overflow nor lose the small ones (-inf scores
    give -inf)."""
    scores = np.asarray(scores, dtype=np.float64)
    shifted = scores - scores.max()
    return shifted - np.log(np.exp(shifted).sum())


def pick_token(logits: np.ndarray, generated: int, options: DecodingOptions, stop_token_ids: Sequence[int],
               rng: np.random.Generator | None) -> tuple[int, float]:
    """The next token of a row and its log-probability.

    Args:
        logits: ``(vocab,)`` the LLM's logits for the row's next position (not modified).
        generated: tokens the row has generated so far (``min_new_tokens`` masks the stop tokens
            below it).
        options: ``temperature`` 0 picks the arg-max (the first one, as ``torch.argmax``); above 0 draws
            from ``softmax(logits / temperature)`` with ``rng``.
        stop_token_ids: the tokens ``min_new_tokens`` masks.

    Returns:
        ``(token id, natural-log probability of that token)``.
    """
    if options.temperature > 0:
        scores = np.array(logits, dtype=np.float64)
        if generated < options.min_new_tokens:
            scores[list(stop_token_ids)] = -np.inf
        scores /= options.temperature
        logprobs = log_softmax(scores)
        probs = np.exp(logprobs)
        token = int(rng.choice(len(probs), p=probs / probs.sum()))
        return token, float(logprobs[token])
    # greedy, every token of the default path: no float64 copy of the vocabulary row (~2 ms a token at
    # 151,936 entries); the arg-max and one log-sum-exp (float32 exp, float64 sum) give the same value
    scores = np.asarray(logits, dtype=np.float32)
    if generated < options.min_new_tokens and len(stop_token_ids):
        scores = scores.copy()
        scores[list(stop_token_ids)] = -np.inf
    token = int(np.argmax(scores))
    return token, float(scores[token]) - _logsumexp(scores)


def _logsumexp(scores: np.ndarray) -> float:
    """``log(sum(exp(scores)))`` of a float32 row, stably (the maximum subtracted first)."""
    top = float(scores.max())
    if not np.isfinite(top):
        return top
    return top + float(np.log(np.exp(scores - np.float32(top)).sum(dtype=np.float64)))
