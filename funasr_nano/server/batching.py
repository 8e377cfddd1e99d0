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

An engine that batches continuously itself (``engine.continuous_batching``: the llama.cpp engine,
:mod:`funasr_nano.engines.continuous`) gets each call straight from the request's thread instead: its
rows join the engine's running batch at the next decoding step and leave as soon as they finish, so
no call waits for another's batch to end; ``batch_window``, ``arrival_wait`` and the scheduler thread
are not used, ``max_batch_size`` becomes the engine's ``n_seq_max`` (rows per ``llama_decode``), and
the counters count decoding steps as batches (:class:`BatchStats`). The transformers engine keeps the
scheduler above.

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

from ..engines.base import Engine, GeneratedTokens, LLMInput, OnToken
from ..options import DecodingOptions
from ..pipeline.chunks import isolate_failures

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
        max_rows: the largest batch so far. batch_sizes: ``{rows: batches}``. With an engine that
            batches continuously, a batch is one decoding step (one ``llama_decode`` of every running
            row): batches counts steps, rows the running rows summed over steps (rows / batches: the
            mean rows per step), batch_sizes ``{running rows: steps}``.
        cancelled_calls: calls stopped because their request was cancelled; cancelled_tokens: the
            tokens those calls had generated when they stopped.
        tokens: tokens generated by completed batches (all rows).
    """

    calls: int = 0
    batches: int = 0
    rows: int = 0
    max_rows: int = 0
    batch_sizes: dict = dataclasses.field(default_factory=dict)
    cancelled_calls: int = 0
    cancelled_tokens: int = 0
    tokens: int = 0


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

    def observe(self, row: int, tokens: Sequence[int]) -> None:
        """Show a row's tokens so far to the request's token observer (:attr:`RequestContext.on_token`), if
        any; an observer that raises is logged, never breaking the rows."""
        if self.context is not None and self.context.on_token is not None:
            try:
                self.context.on_token(self.number, row, tokens)
            except Exception:  # an observer's bug must not break the other rows
                logger.exception("token observer failed")

    def batch_key(self) -> tuple | None:
        """Calls with equal keys can share a batch; ``None``: never shared (beam search)."""
        if self.options.num_beams > 1:
            return None
        return (self.options.temperature, self.options.min_new_tokens)


def _fail(call: _Call, error: Exception) -> None:
    """A call whose decoding failed alone: its caller raises ``error``."""
    call.error = error
    call.done.set()


class _AnySet:
    """Set when any of ``events`` is (a ``cancel`` for :meth:`Engine.generate`)."""

    def __init__(self, *events: threading.Event | None):
        self.events = [event for event in events if event is not None]

    def is_set(self) -> bool:
        return any(event.is_set() for event in self.events)


class BatchingEngine(Engine):
    """An engine that gathers concurrent ``generate`` calls into batches for ``engine`` (or, for an
    engine that batches continuously, passes them straight through: module docstring).

    Args:
        engine: the engine that decodes (transformers, llama.cpp, ...).
        batch_window: seconds the scheduler waits, after the first call of a batch, for more calls
            (0: only the calls already waiting join it).
        max_batch_size: most rows in one batch (1: no batching, calls are decoded one at a time in
            arrival order). A single call with more rows is decoded whole, alone. Continuous batching:
            set as the engine's ``n_seq_max`` (``engine.set_n_seq_max``).
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
        self.continuous = bool(getattr(engine, "continuous_batching", False))
        self._stats = BatchStats()
        self._waiting: collections.deque[_Call] = collections.deque()
        self._condition = threading.Condition()
        self._closed = False
        self._worker = None
        if self.continuous:
            if engine.n_seq_max != max_batch_size:
                engine.set_n_seq_max(max_batch_size)
            self._steps_before = dict(engine.step_sizes)  # steps are counted from here
        else:
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
        if self.continuous:
            return self._generate_continuous(call)
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

    @property
    def waiting(self) -> int:
        """Generation calls queued for the next batch (not yet decoding); continuous batching: rows
        waiting to join the running batch."""
        if self.continuous:
            return self.inner.waiting_rows
        return len(self._waiting)

    @property
    def stats(self) -> BatchStats:
        """The counters (a copy); continuous batching: batches are the engine's decoding steps."""
        with self._condition:
            stats = dataclasses.replace(self._stats, batch_sizes=dict(self._stats.batch_sizes))
        if self.continuous:
            before = self._steps_before
            steps = {rows: count - before.get(rows, 0) for rows, count in dict(self.inner.step_sizes).items()
                     if count > before.get(rows, 0)}
            stats.batch_sizes = steps
            stats.batches = sum(steps.values())
            stats.rows = sum(rows * count for rows, count in steps.items())
            stats.max_rows = max(steps, default=0)
        return stats

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
        if self._worker is not None:
            self._worker.join(timeout=10)

    # -- continuous batching: the engine's own running batch ------------------------------------------------

    def _generate_continuous(self, call: _Call) -> list[list[int]]:
        """Decode ``call`` in the engine's running batch, from the caller's thread."""
        with self._condition:
            if self._closed:
                raise RuntimeError("the batching engine is closed")
        context = call.context
        results = self.inner.generate(call.inputs, call.options, on_token=self._observer(call),
                                      cancel=_AnySet(call.cancel, context.cancel if context else None))
        with self._condition:
            self._stats.calls += 1
            self._stats.tokens += sum(len(tokens) for tokens in results)
        if context is not None:
            context.tokens += sum(len(tokens) for tokens in results)
        if call.request_cancelled:
            self._finish_cancelled(call)
            raise RequestCancelled(f"{context.name} was cancelled")
        return results

    def _observer(self, call: _Call) -> OnToken:
        """The ``on_token`` of one call's rows: counts, the call's own ``on_token``, the request's
        observer; stops the rows when the request is cancelled."""

        def on_token(row: int, tokens: Sequence[int]) -> bool:
            call.tokens[row] = len(tokens)
            if call.request_cancelled:
                return True
            stop = call.on_token is not None and bool(call.on_token(row, tokens))
            call.observe(row, tokens)
            return stop

        return on_token

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
        """Decode the batch's calls together; when that fails, each call alone, so that only the culprit
        gets the error. Every call is done (``call.done``) on return."""
        live = self._live(batch)
        if live:
            isolate_failures(self._generate, live, _fail)

    def _live(self, calls: list[_Call]) -> list[_Call]:
        """The calls not cancelled; the cancelled ones are done, with empty rows (nothing generated)."""
        for call in calls:
            if call.cancelled:
                self._finish_cancelled(call)
                call.result = [[] for _ in call.inputs]
                call.done.set()
        return [call for call in calls if not call.done.is_set()]

    def _generate(self, calls: list[_Call]) -> list[None]:
        """Decode ``calls`` as one batch of rows (raising what the engine raises); a call cancelled since the
        batch was taken (one tried alone after a failed batch) is done with empty rows."""
        live = self._live(calls)
        if not live:
            return [None] * len(calls)
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
            call.observe(row, tokens)
            return stop

        rows = len(owners)
        began = time.perf_counter()
        results = self.inner.generate([row for call in live for row in call.inputs], options, on_token=on_token,
                                      cancel=everyone_cancelled)
        logger.debug("batch of %d rows (%d calls) in %.3f s", rows, len(live), time.perf_counter() - began)
        with self._condition:
            stats = self._stats
            stats.batches += 1
            stats.rows += rows
            stats.calls += len(live)
            stats.max_rows = max(stats.max_rows, rows)
            stats.batch_sizes[rows] = stats.batch_sizes.get(rows, 0) + 1
            stats.tokens += sum(len(tokens) for tokens in results)
        at = 0
        for call in live:
            # GeneratedTokens keep their log-probabilities (Segment.avg_logprob)
            call.result = [tokens if isinstance(tokens, GeneratedTokens) else list(tokens)
                           for tokens in results[at: at + len(call.inputs)]]
            at += len(call.inputs)
            if call.context is not None:
                call.context.tokens += sum(len(tokens) for tokens in call.result)
            if call.request_cancelled:
                self._finish_cancelled(call)
            call.done.set()
        return [None] * len(calls)

    def _finish_cancelled(self, call: _Call) -> None:
        generated = sum(call.tokens)
        with self._condition:
            self._stats.cancelled_calls += 1
            self._stats.cancelled_tokens += generated
        if call.context is not None:
            logger.info("%s: client gone, generation stopped after %d tokens", call.context.name, generated)
