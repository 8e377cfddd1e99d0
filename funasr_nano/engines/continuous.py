"""Continuous batching bookkeeping for an engine whose rows are sequences of one KV cache (llama.cpp):
which waiting rows join the running batch at the next decoding step, which sequence and how many KV
cells each gets, which prompt prefixes stay cached, and which calling thread drives the decoding.

This module decides; the engine (:class:`funasr_nano.engines.llamacpp.LlamaCppEngine`) executes:
it decodes the admitted rows' prompts and the running rows' tokens, and gives the scheduler two
callbacks, one that clears a sequence of the KV cache and one that re-creates the cache larger. The
policy is llama.cpp's server's (``tools/server/server.cpp``: a free slot takes the next queued task at
the next ``llama_decode``), with vLLM's rule that a request is admitted only when its KV fits.

Policy, in order:

- rows are admitted in arrival order (FIFO, no overtaking), at most ``n_seq_max`` running;
- the running batch has one LoRA adapter (engines set adapters per context): once the oldest waiting
  row needs another adapter, no more rows join, the running ones finish, then that adapter's rows run;
- a row is admitted when its cells (prompt + ``max_new_tokens``, minus a cached prefix it shares) fit
  beside the running rows' and the cached prefixes'; idle cached prefixes are dropped, least recently
  used first, to make room;
- a row that does not fit stops admission; if the cache can still grow, the running rows drain and the
  cache is re-created for the waiting rows (at least twice as large, up to ``n_ctx``); rows about to
  start on an idle engine that do not fit together grow it at once.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from typing import Callable, Sequence

from ..options import DecodingOptions

logger = logging.getLogger(__name__)

# The smallest KV cache an engine allocates, cells; sizes are rounded up to a multiple of it (llama.cpp
# pads its cache to 256 cells with flash attention anyway).
KV_CELLS_MIN = 256


@dataclasses.dataclass(eq=False)
class GenerationCall:
    """One ``generate`` call: its options, callbacks and results (filled as its rows decode).

    Attributes:
        on_token: ``(row, tokens) -> stop``, called after each token of a running row.
        cancel: anything with ``is_set()``; checked at every step.
        rng: the sampler's random generator (``temperature > 0``), shared by the call's rows.
        remaining: rows not finished; error: the first error of one of its rows.
        results: per row, the generated token ids; logprobs: per row, the log-probability of each
            picked token (then of the stop token, when the row ended on one).
    """

    options: DecodingOptions
    on_token: Callable[[int, Sequence[int]], bool] | None
    cancel: threading.Event | None
    rng: object
    remaining: int
    error: BaseException | None = None
    results: list = dataclasses.field(default_factory=list)
    logprobs: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.results = [[] for _ in range(self.remaining)]
        self.logprobs = [[] for _ in range(self.remaining)]

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()


@dataclasses.dataclass(eq=False)
class PrefixEntry:
    """A cached prompt prefix: decoded once as sequence ``seq`` (positions ``0..length-1``) and shared
    by the rows that start with it."""

    seq: int
    length: int
    users: int = 0  # running rows sharing its cells
    used: int = 0  # last use, on the scheduler's clock
    decoded: bool = False  # set by the engine once its KV is in the cache


@dataclasses.dataclass(eq=False)
class ScheduledRow:
    """One input of a call, waiting or running.

    Attributes:
        runs: the engine's prepared prompt parts, in order.
        length: prompt positions; need: KV cells it may use (prompt + ``max_new_tokens``).
        prefix: the prefix-cache key (exact token ids of its leading token run, and the adapter), or
            ``None``: not cached; prefix_length: positions of that run.
        seq: its sequence id while running (-1 otherwise); entry: the cached prefix it shares.
        position: the next position to decode; logits: the logits its next token is picked from.
    """

    call: GenerationCall
    index: int
    runs: list
    adapter: str | None
    length: int
    need: int
    prefix: tuple | None = None
    prefix_length: int = 0
    seq: int = -1
    cells: int = 0
    entry: PrefixEntry | None = None
    position: int = 0
    logits: object = None

    @property
    def tokens(self) -> list[int]:
        return self.call.results[self.index]

    @property
    def logprobs(self) -> list[float]:
        return self.call.logprobs[self.index]


class ContinuousScheduler:
    """Waiting and running rows of one engine context.

    Args:
        n_seq_max: most running rows (sequence ids ``0..n_seq_max-1``).
        prefix_cache: cached prefixes (sequence ids from ``n_seq_max`` on); 0: none.
        n_ctx: the most KV cells the cache may grow to.
        clear_sequence: removes a sequence's cells from the KV cache (``llama_memory_seq_rm``).
        resize: re-creates the (empty) KV cache with at least the given cells; returns the cells it has.

    Thread safety: every method takes :attr:`lock`; the engine's driver calls :meth:`admit` and
    :meth:`finish` while it holds the context, other threads only :meth:`submit` and :meth:`wait_to_drive`.
    """

    def __init__(self, n_seq_max: int, prefix_cache: int, n_ctx: int,
                 clear_sequence: Callable[[int], None], resize: Callable[[int], int]):
        self.n_seq_max, self.prefix_cache, self.n_ctx = n_seq_max, prefix_cache, n_ctx
        self._clear_sequence, self._resize = clear_sequence, resize
        self.lock = threading.Condition()
        self.waiting: collections.deque[ScheduledRow] = collections.deque()
        self.running: list[ScheduledRow] = []
        self.kv_cells = 0
        self._driving = False
        self._grow_pending = False
        self._clock = 0
        self.reset(0)

    def reset(self, kv_cells: int) -> None:
        """The KV cache is empty now, with ``kv_cells`` cells (new context, or after an error)."""
        with self.lock:
            self.kv_cells = kv_cells
            self.prefixes: dict[tuple, PrefixEntry] = {}
            self.cells_used = 0
            self._free_seqs = list(range(self.n_seq_max - 1, -1, -1))
            self._free_prefix_seqs = list(range(self.n_seq_max + self.prefix_cache - 1, self.n_seq_max - 1, -1))

    # -- callers ---------------------------------------------------------------------------------------

    def submit(self, rows: Sequence[ScheduledRow]) -> None:
        with self.lock:
            self.waiting.extend(rows)

    def wait_to_drive(self, call: GenerationCall) -> bool:
        """Block until ``call`` is finished (``False``) or nobody drives (``True``: the caller drives
        now, and must :meth:`stop_driving` when its call is finished)."""
        with self.lock:
            while call.remaining and self._driving:
                self.lock.wait()
            if not call.remaining:
                return False
            self._driving = True
            return True

    def stop_driving(self) -> None:
        with self.lock:
            self._driving = False
            self.lock.notify_all()

    def fail_waiting(self, error: BaseException) -> None:
        """Every waiting row fails with ``error`` (the engine closes)."""
        with self.lock:
            waiting, self.waiting = list(self.waiting), collections.deque()
        for row in waiting:
            self._complete(row, error)

    # -- the driver --------------------------------------------------------------------------------------

    def admit(self) -> list[ScheduledRow]:
        """Rows that join the running batch now (module docstring), each with a sequence id and, when
        its prefix is cached or becomes so, the :class:`PrefixEntry` it shares; also drops the waiting
        rows of cancelled calls and may re-create the cache (``resize``) while nothing runs."""
        admitted = []
        with self.lock:
            for row in [row for row in self.waiting if row.call.cancelled]:
                self.waiting.remove(row)
                self._complete(row)  # cancelled while waiting: nothing generated
            if not self.waiting:
                return admitted
            adapter = self.running[0].adapter if self.running else self.waiting[0].adapter
            if not self.running:
                wave = []
                for row in self.waiting:
                    if row.adapter != adapter or len(wave) == self.n_seq_max:
                        break
                    wave.append(row.need)
                if self.kv_cells < self.n_ctx and (self._grow_pending or sum(wave) > self.kv_cells):
                    self._grow(wave)
            while self.waiting and len(self.running) < self.n_seq_max:
                row = self.waiting[0]
                if row.adapter != adapter:
                    break  # the running batch drains, then the next adapter's rows run
                if not self._reserve(row):
                    if self.kv_cells < self.n_ctx:
                        self._grow_pending = True  # the running rows drain, then the cache grows
                        if not self.running:
                            self._grow([row.need])
                            continue
                    break  # waits for cells
                self.waiting.popleft()
                row.seq = self._free_seqs.pop()
                self.running.append(row)
                admitted.append(row)
        return admitted

    def finish(self, row: ScheduledRow, error: BaseException | None = None) -> None:
        """``row`` leaves the running batch: its sequence is cleared, its cells freed; its call
        completes when it was the call's last row."""
        with self.lock:
            if row in self.running:
                self.running.remove(row)
                self._clear_sequence(row.seq)
                self._free_seqs.append(row.seq)
                self.cells_used -= row.cells
                if row.entry is not None:
                    row.entry.users -= 1
            row.seq, row.cells, row.entry, row.logits = -1, 0, None, None
            self._complete(row, error)

    def fail_running(self, error: BaseException) -> None:
        """Every running row fails (the KV cache is in an unknown state: the engine clears it and
        calls :meth:`reset`)."""
        with self.lock:
            running, self.running = self.running, []
        for row in running:
            row.seq, row.cells, row.entry, row.logits = -1, 0, None, None
            self._complete(row, error)

    # -- internals -----------------------------------------------------------------------------------------

    def _complete(self, row: ScheduledRow, error: BaseException | None = None) -> None:
        with self.lock:
            call = row.call
            if error is not None and call.error is None:
                call.error = error
            call.remaining -= 1
            if not call.remaining:
                self.lock.notify_all()

    def _reserve(self, row: ScheduledRow) -> bool:
        """Account the cells ``row`` needs; ``False``: they do not fit (nothing accounted)."""
        entry = self.prefixes.get(row.prefix) if row.prefix is not None else None
        made = False
        if entry is None and row.prefix is not None and (self._free_prefix_seqs or self._evict()):
            entry = PrefixEntry(self._free_prefix_seqs.pop(), row.prefix_length)
            self.prefixes[row.prefix] = entry
            self.cells_used += entry.length
            made = True
        cost = row.need - row.prefix_length if entry is not None else row.need
        while self.cells_used + cost > self.kv_cells and self._evict(keep=entry):
            pass
        if self.cells_used + cost > self.kv_cells:
            if made:
                self._drop(row.prefix)
            return False
        row.cells = cost
        self.cells_used += cost
        if entry is not None:
            entry.users += 1
            self._clock += 1
            entry.used = self._clock
        row.entry = entry
        return True

    def _evict(self, keep: PrefixEntry | None = None) -> bool:
        """Drop the least recently used cached prefix that no running row shares (not ``keep``)."""
        idle = [(entry.used, key) for key, entry in self.prefixes.items() if not entry.users and entry is not keep]
        if not idle:
            return False
        self._drop(min(idle)[1])
        return True

    def _drop(self, key: tuple) -> None:
        entry = self.prefixes.pop(key)
        if entry.decoded:
            self._clear_sequence(entry.seq)
        self._free_prefix_seqs.append(entry.seq)
        self.cells_used -= entry.length

    def _grow(self, needs: Sequence[int]) -> None:
        """Re-create the empty cache for the rows about to run (the cells of ``needs``), at least twice
        as large as now, at most ``n_ctx``; the cached prefixes are lost."""
        self._grow_pending = False
        want = max(sum(needs), 2 * self.kv_cells)
        want = min(-(-want // KV_CELLS_MIN) * KV_CELLS_MIN, self.n_ctx)
        logger.info("KV cache %d -> %d cells", self.kv_cells, want)
        self.reset(self._resize(want))
