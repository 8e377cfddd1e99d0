"""Dynamic batching at the engine seam: generation calls that arrive together from concurrent
requests are decoded as one batch.

:class:`BatchingEngine` wraps the model's engine (:class:`funasr_nano.engines.base.Engine`) and is an
engine itself, so every pipeline path (``transcribe``, ``transcribe_segments``, ``translate_stream``,
live ``StreamingSession``) runs unchanged on top of it; each request runs in its own thread and blocks
in :meth:`BatchingEngine.generate`. One scheduler thread takes the oldest waiting call, waits up to
``batch_window`` seconds for more compatible calls (same ``temperature``, ``min_new_tokens``, greedy
or sampling), and hands all their rows, up to ``max_batch_size``, to the wrapped engine in one
``generate``. Rows whose ``max_new_tokens`` differ share a batch: the batch runs to the largest and
each row is stopped at its own limit through ``on_token``. Batched rows decode as they would alone (the
engine's contract), so results do not depend on what else was in the batch.

A request is tied to its calls by a :class:`RequestContext` (a context variable, set in the request's
thread and copied into generation threads): its ``cancel`` event (the client went away) stops its rows
at the next token (``on_token`` returns ``True``; a batch whose rows are all cancelled is cancelled as a
whole through the engine's ``cancel``) and makes its later calls raise :class:`RequestCancelled`; its
``on_token`` observer sees the request's tokens as they are generated (server-sent events).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import logging
import threading
import time
from typing import Callable, Iterator, Sequence

from ..engines.base import Engine, LLMInput, OnToken
from ..options import DecodingOptions

logger = logging.getLogger(__name__)


class RequestCancelled(Exception):
    """The request's client went away: its generation was stopped."""


# Called with (call number within the request, row within the call, tokens so far) after each token.
TokenObserver = Callable[[int, int, Sequence[int]], None]


@dataclasses.dataclass(eq=False)  # compared (and hashed) by identity: one per request
class RequestContext:
    """What the batching engine knows of the request a generation call belongs to.

    Attributes:
        name: for log lines (e.g. ``transcription 17``).
        cancel: set when the client disconnects; the request's rows stop within one token.
        on_token: optional observer of the request's tokens as they are generated.
        tokens: tokens generated for the request so far (all its calls).
        calls: generation calls the request made.
        preparing: the request has not reached its first generation call yet (reading its upload,
            running the encoder); the scheduler may wait for it (``arrival_wait``).
    """

    name: str
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    on_token: TokenObserver | None = None
    tokens: int = 0
    calls: int = 0
    preparing: bool = False


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("funasr_nano_request", default=None)


@contextlib.contextmanager
def request_context(context: RequestContext) -> Iterator[RequestContext]:
    """Run the block's generation calls (and those of threads started with a copy of its context) on
    behalf of ``context``."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


@dataclasses.dataclass
class BatchStats:
    """Counters of the scheduler (read by ``GET /health`` and the tests).

    Attributes:
        calls: generation calls served. batches: engine ``generate`` calls made. rows: rows decoded.
        max_rows: the largest batch so far. batch_sizes: ``{rows: batches}``.
        cancelled_calls: calls stopped because their request was cancelled; cancelled_tokens: the
            tokens those calls had generated when they stopped.
    """

    calls: int = 0
    batches: int = 0
    rows: int = 0
    max_rows: int = 0
    batch_sizes: dict = dataclasses.field(default_factory=dict)
    cancelled_calls: int = 0
    cancelled_tokens: int = 0


class _Call:
    """One ``generate`` call waiting for (or in) a batch."""

    def __init__(self, inputs: Sequence[LLMInput], options: DecodingOptions, on_token: OnToken | None,
                 cancel: threading.Event | None, context: RequestContext | None):
        self.inputs = list(inputs)
        self.options = options
        self.on_token = on_token
        self.cancel = cancel
        self.context = context
        self.number = context.calls if context is not None else 0
        self.done = threading.Event()
        self.result: list[list[int]] | None = None
        self.error: BaseException | None = None
        self.tokens = [0] * len(self.inputs)

    @property
    def request_cancelled(self) -> bool:
        return self.context is not None and self.context.cancel.is_set()

    @property
    def cancelled(self) -> bool:
        return self.request_cancelled or (self.cancel is not None and self.cancel.is_set())

    def batch_key(self) -> tuple | None:
        """Calls with equal keys can share a batch; ``None``: never shared (beam search)."""
        if self.options.num_beams > 1:
            return None
        return (self.options.temperature, self.options.min_new_tokens)


class BatchingEngine(Engine):
    """An engine that gathers concurrent ``generate`` calls into batches for ``engine``.

    Args:
        engine: the engine that decodes (transformers, llama.cpp, ...).
        batch_window: seconds the scheduler waits, after the first call of a batch, for more calls
            (0: only the calls already waiting join it).
        max_batch_size: most rows in one batch (1: no batching, calls are decoded one at a time in
            arrival order). A single call with more rows is decoded whole, alone.
        arriving: how many requests are on their way to their first call (``preparing``); while
            there are some, the scheduler waits up to ``arrival_wait`` seconds more than the window for
            them. Requests run their encoder in their own threads, so under load they reach the
            scheduler staggered; without this, closed-loop clients alternate between small batches.
        arrival_wait: the longest extra wait for arriving requests (seconds).
    """

    def __init__(self, engine: Engine, *, batch_window: float = 0.01, max_batch_size: int = 16,
                 arriving: Callable[[], int] | None = None, arrival_wait: float = 0.0):
        super().__init__(engine.stop_token_ids)
        if batch_window < 0 or arrival_wait < 0:
            raise ValueError(f"batch_window and arrival_wait must be >= 0, got {batch_window}, {arrival_wait}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.inner = engine
        self.name = engine.name
        self.batch_window = batch_window
        self.max_batch_size = max_batch_size
        self.arriving = arriving
        self.arrival_wait = arrival_wait
        self.stats = BatchStats()
        self._waiting: collections.deque[_Call] = collections.deque()
        self._condition = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="funasr-nano-batcher", daemon=True)
        self._worker.start()

    # -- the engine interface ---------------------------------------------------------------------------

    @property
    def hidden_size(self) -> int:
        return self.inner.hidden_size

    @property
    def max_positions(self) -> int:
        return self.inner.max_positions

    @property
    def supports_beam_search(self) -> bool:
        return self.inner.supports_beam_search

    def __getattr__(self, name: str):  # device, dtype, ... of the wrapped engine
        if name.startswith("_") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def generate(self, inputs: Sequence[LLMInput], options: DecodingOptions, *, on_token: OnToken | None = None,
                 cancel: threading.Event | None = None) -> list[list[int]]:
        """Queue the call, wait for its batch to be decoded, return its rows' tokens.

        Raises:
            RequestCancelled: the current request (:func:`request_context`) was cancelled, before or
                during the call.
            RuntimeError: the engine was closed.
        """
        if not inputs:
            return []
        context = _current.get()
        if context is not None:
            if context.cancel.is_set():
                raise RequestCancelled(f"{context.name} was cancelled")
            context.calls += 1
            context.preparing = False
        call = _Call(inputs, options, on_token, cancel, context)
        with self._condition:
            if self._closed:
                raise RuntimeError("the batching engine is closed")
            self._waiting.append(call)
            self._condition.notify_all()
        call.done.wait()
        if call.error is not None:
            raise call.error
        if call.request_cancelled:
            raise RequestCancelled(f"{context.name} was cancelled")
        assert call.result is not None
        return call.result

    def close(self) -> None:
        """Stop the scheduler and close the wrapped engine."""
        self.shutdown()
        self.inner.close()

    def shutdown(self) -> None:
        """Stop the scheduler (calls still waiting fail with ``RuntimeError``); the wrapped engine stays open."""
        with self._condition:
            self._closed = True
            waiting, self._waiting = list(self._waiting), collections.deque()
            self._condition.notify_all()
        for call in waiting:
            call.error = RuntimeError("the batching engine is closed")
            call.done.set()
        self._worker.join(timeout=10)

    # -- the scheduler ------------------------------------------------------------------------------------

    def _take_batch(self) -> list[_Call] | None:
        """The next batch: the oldest call plus compatible calls arriving within the window."""
        with self._condition:
            while not self._waiting and not self._closed:
                self._condition.wait()
            if self._closed:
                return None
            first = self._waiting.popleft()
            batch, rows, key = [first], len(first.inputs), first.batch_key()
            if key is None or self.max_batch_size == 1:
                return batch
            window_end = time.monotonic() + self.batch_window
            wait_end = window_end + self.arrival_wait
            while rows < self.max_batch_size:
                for call in list(self._waiting):
                    if call.batch_key() == key and rows + len(call.inputs) <= self.max_batch_size:
                        self._waiting.remove(call)
                        batch.append(call)
                        rows += len(call.inputs)
                now = time.monotonic()
                if rows >= self.max_batch_size or self._closed:
                    break
                if now < window_end:
                    self._condition.wait(window_end - now)
                elif now < wait_end and self.arriving is not None and self.arriving() > 0:
                    self._condition.wait(min(0.005, wait_end - now))  # re-count the arriving requests
                else:
                    break
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                self._decode(batch)
            except BaseException as error:  # never lose a waiting caller
                logger.exception("batch failed")
                for call in batch:
                    if not call.done.is_set():
                        call.error = error
                        call.done.set()

    def _decode(self, batch: list[_Call]) -> None:
        live = [call for call in batch if not call.cancelled]
        for call in batch:
            if call.cancelled:  # cancelled while waiting: nothing generated
                self._finish_cancelled(call)
                call.result = [[] for _ in call.inputs]
                call.done.set()
        if not live:
            return
        owners = [(call, row) for call in live for row in range(len(call.inputs))]
        options = dataclasses.replace(live[0].options, max_new_tokens=max(c.options.max_new_tokens for c in live))
        everyone_cancelled = threading.Event()

        def on_token(index: int, tokens: Sequence[int]) -> bool:
            call, row = owners[index]
            call.tokens[row] = len(tokens)
            if call.cancelled:
                if all(c.cancelled for c in live):
                    everyone_cancelled.set()
                return True
            stop = len(tokens) >= call.options.max_new_tokens
            if call.on_token is not None and call.on_token(row, tokens):
                stop = True
            if call.context is not None and call.context.on_token is not None:
                try:
                    call.context.on_token(call.number, row, tokens)
                except Exception:  # an observer's bug must not break the other rows
                    logger.exception("token observer failed")
            return stop

        rows = len(owners)
        began = time.perf_counter()
        try:
            results = self.inner.generate([row for call in live for row in call.inputs], options, on_token=on_token,
                                          cancel=everyone_cancelled)
        except Exception as error:
            if len(live) == 1:
                live[0].error = error
                live[0].done.set()
                return
            logger.info("a batch of %d calls failed (%s); decoding them one by one", len(live), error)
            for call in live:
                self._decode([call])
            return
        logger.debug("batch of %d rows (%d calls) in %.3f s", rows, len(live), time.perf_counter() - began)
        with self._condition:
            stats = self.stats
            stats.batches += 1
            stats.rows += rows
            stats.calls += len(live)
            stats.max_rows = max(stats.max_rows, rows)
            stats.batch_sizes[rows] = stats.batch_sizes.get(rows, 0) + 1
        at = 0
        for call in live:
            call.result = [list(tokens) for tokens in results[at: at + len(call.inputs)]]
            at += len(call.inputs)
            if call.context is not None:
                call.context.tokens += sum(len(tokens) for tokens in call.result)
            if call.request_cancelled:
                self._finish_cancelled(call)
            call.done.set()

    def _finish_cancelled(self, call: _Call) -> None:
        generated = sum(call.tokens)
        with self._condition:
            self.stats.cancelled_calls += 1
            self.stats.cancelled_tokens += generated
        if call.context is not None:
            logger.info("%s: client gone, generation stopped after %d tokens", call.context.name, generated)
