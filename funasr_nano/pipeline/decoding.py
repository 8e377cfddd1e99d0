"""Decoding above the engine: the repetition guard, streaming of tokens, cancellation, and waveforms ->
token ids.

The guard and streaming are ``on_token`` callbacks of :meth:`funasr_nano.engines.base.Engine.generate`,
so they behave the same on every engine. FunASR decodes greedily up to ``max_length`` (512) new tokens
and stops at the LLM's end-of-sequence token (``FunASRNano.inference_llm``); the guard is ours.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from ..engines.base import GeneratedTokens, LLMInput, OnToken
from ..options import DecodingOptions

if TYPE_CHECKING:
    from ..engines.base import Engine
    from ..models.base import FamilyModel

logger = logging.getLogger(__name__)


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
    """``tokens`` with a looping tail (see :func:`repeated_tail`) cut down to one copy of the n-gram
    (:class:`~funasr_nano.engines.base.GeneratedTokens` keep their log-probabilities, cut alike)."""
    loop = repeated_tail(list(tokens), options)
    if loop is None:
        return tokens if isinstance(tokens, GeneratedTokens) else list(tokens)
    period, repeats = loop
    logger.warning("output looped (%d-token pattern x %d); cut to one copy", period, repeats)
    length = len(tokens) - (repeats - 1) * period
    return tokens.cut(length) if isinstance(tokens, GeneratedTokens) else list(tokens)[:length]


def avg_logprob(tokens: Sequence[int]) -> float | None:
    """The mean log-probability of generated tokens, when the engine reported them."""
    return tokens.avg_logprob if isinstance(tokens, GeneratedTokens) else None


def generate(engine: "Engine", inputs: Sequence[LLMInput], options: DecodingOptions, *,
             on_token: OnToken | None = None, cancel: threading.Event | None = None) -> list[list[int]]:
    """``engine.generate`` with the repetition guard: a row whose tail loops is stopped and cut to one
    copy of the loop. ``on_token`` (streaming) sees every token before the guard's cut.

    Raises:
        ValueError: beam search on an engine without it.
    """
    if options.num_beams > 1 and not engine.supports_beam_search:
        raise ValueError(f"the {engine.name} engine does not do beam search (num_beams={options.num_beams})")
    guard = options.repetition_guard

    def watch(row: int, tokens: Sequence[int]) -> bool:
        stop = bool(on_token(row, tokens)) if on_token is not None else False
        return stop or (guard and repeated_tail(tokens, options) is not None)

    callback = watch if (guard or on_token is not None) else None
    results = engine.generate(inputs, options, on_token=callback, cancel=cancel)
    return [cut_repetition(tokens, options) if guard else tokens for tokens in results]


class TokenStream:
    """Generation of one row in a background thread, read as an iterator of the growing token list.

    Iterating yields the tokens generated so far after each step; the last item is the final list (end
    of turn excluded, repetition cut). A consumer that stops reading (``close()``, or dropping the
    iterator) cancels the generation within one token; an error in generation is raised in the
    consumer.
    """

    def __init__(self, engine: "Engine", llm_input: LLMInput, options: DecodingOptions):
        self._queue: queue.Queue = queue.Queue()
        self.cancel = threading.Event()
        self.generated = 0  # tokens the engine produced (counts tokens after a cancel too)
        self._result: dict = {}

        def on_token(row: int, tokens: Sequence[int]) -> bool:
            self.generated = len(tokens)
            self._queue.put(list(tokens))
            return False

        def work():
            try:
                self._result["tokens"] = generate(engine, [llm_input], options, on_token=on_token,
                                                  cancel=self.cancel)[0]
            except BaseException as error:  # handed to the consumer thread
                self._result["error"] = error
            finally:
                self._queue.put(None)

        # in a copy of the caller's context, so that context variables (e.g. the server's request
        # context, which carries its cancellation) reach the engine from this thread too
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(work,),
                                        name="funasr-nano-generate", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[list[int]]:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                yield item
            self._thread.join()
            if "error" in self._result:
                raise self._result["error"]
            yield self._result["tokens"]
        finally:
            self.close()

    def close(self) -> None:
        """Stop generating (if still running) and wait for the thread."""
        self.cancel.set()
        self._thread.join()


def decode_waveforms(family: "FamilyModel", engine: "Engine", waveforms: Sequence[np.ndarray],
                     prompt: str | Sequence[str],
                     options: DecodingOptions, *, prefix_texts: Sequence[str] | None = None, batch_size: int = 8,
                     adapter: str | None = None, embeddings: Sequence[Any] | None = None) -> list[list[int]]:
    """Decode several utterances, ``batch_size`` at a time through the LLM.

    Each utterance is encoded on its own (encoder and adaptor are cheap next to the LLM); the engine
    decodes each batch of prompts so that every row decodes as it would alone.

    Args:
        waveforms: ``(samples,)`` float32 16 kHz arrays (each up to ~30 s).
        prompt: the family's prompt text (e.g. ``family.transcription_prompt(...)``), or one per
            waveform (per-segment hotwords).
        prefix_texts: one answer prefix per waveform (FunASR's ``prev_text``), default none.
        batch_size: rows per LLM call (>= 1).
        adapter: the LoRA adapter the rows run with (``None``: base weights).
        embeddings: per waveform, its audio embeddings already computed (``family.audio_embeddings``'
            result, e.g. from the CTC analysis' encoder pass), or ``None`` to compute them here.

    Returns:
        generated token ids per waveform, in order, end-of-turn excluded.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prefix_texts = list(prefix_texts) if prefix_texts is not None else [""] * len(waveforms)
    if len(prefix_texts) != len(waveforms):
        raise ValueError(f"{len(waveforms)} waveforms but {len(prefix_texts)} prefix texts")
    prompts = [prompt] * len(waveforms) if isinstance(prompt, str) else list(prompt)
    if len(prompts) != len(waveforms):
        raise ValueError(f"{len(waveforms)} waveforms but {len(prompts)} prompts")
    embeddings = list(embeddings) if embeddings is not None else [None] * len(waveforms)
    if len(embeddings) != len(waveforms):
        raise ValueError(f"{len(waveforms)} waveforms but {len(embeddings)} embeddings")
    results: list[list[int]] = []
    for begin in range(0, len(waveforms), batch_size):
        end = begin + batch_size
        rows = [family.llm_input(text, family.audio_embeddings(waveform) if audio is None else audio,
                                 answer_prefix=prefix, adapter=adapter)
                for waveform, audio, prefix, text in zip(waveforms[begin:end], embeddings[begin:end],
                                                         prefix_texts[begin:end], prompts[begin:end])]
        results.extend(generate(engine, rows, options))
    return results
