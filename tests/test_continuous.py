"""The continuous-batching policy (funasr_nano.engines.continuous) without an engine: arrival order,
one adapter per running batch, KV cells accounted with shared prefixes, least recently used prefixes
dropped, the cache grown for rows that do not fit, cancelled rows dropped while waiting."""

from __future__ import annotations

import threading

from funasr_nano.engines.continuous import KV_CELLS_MIN, ContinuousScheduler, GenerationCall, ScheduledRow
from funasr_nano.options import DecodingOptions


class Cache:
    """The engine's side: records cleared sequences and re-creations."""

    def __init__(self):
        self.cleared, self.sizes = [], []

    def resize(self, cells: int) -> int:
        self.sizes.append(cells)
        return cells


def scheduler(n_seq_max=4, prefix_cache=2, n_ctx=4096, kv_cells=KV_CELLS_MIN):
    cache = Cache()
    result = ContinuousScheduler(n_seq_max, prefix_cache, n_ctx, cache.cleared.append, cache.resize)
    result.reset(kv_cells)
    return result, cache


def rows(count, length=40, max_new=16, prefix=None, prefix_length=0, adapter=None, cancel=None):
    call = GenerationCall(DecodingOptions(max_new_tokens=max_new), None, cancel, None, count)
    return [ScheduledRow(call, i, [], adapter, length, length + max_new, prefix, prefix_length) for i in range(count)]


def test_rows_join_in_arrival_order_up_to_n_seq_max():
    s, _ = scheduler(n_seq_max=2)
    first, second = rows(3), rows(1)
    s.submit(first)
    s.submit(second)
    assert s.admit() == first[:2]
    assert s.admit() == []  # no free sequence
    s.finish(first[0])
    assert s.admit() == [first[2]]  # the oldest waiting row, never overtaken
    assert sorted(r.seq for r in s.running) == [0, 1]
    s.finish(first[1])
    assert s.admit() == second
    assert first[0].call.remaining == 1


def test_one_adapter_per_running_batch():
    s, _ = scheduler()
    base, other, late_base = rows(1), rows(1, adapter="translate"), rows(1)
    for group in (base, other, late_base):
        s.submit(group)
    assert s.admit() == base  # the adapter row waits: the base row behind it may not overtake it
    assert s.admit() == []
    s.finish(base[0])
    assert s.admit() == other
    s.finish(other[0])
    assert s.admit() == late_base


def test_cells_with_a_shared_prefix_and_lru_eviction():
    s, cache = scheduler(n_seq_max=8, prefix_cache=2, kv_cells=256)
    a = rows(2, length=60, max_new=20, prefix=("a",), prefix_length=30)  # 80 cells each, 30 shared
    s.submit(a)
    assert s.admit() == a
    assert s.cells_used == 30 + 2 * 50 and a[0].entry is a[1].entry and a[0].entry.users == 2
    entry_a = a[0].entry
    entry_a.decoded = True  # the engine decoded it
    for row in a:
        s.finish(row)
    assert s.cells_used == 30  # the prefix stays cached
    b = rows(1, length=60, max_new=20, prefix=("b",), prefix_length=30)
    c = rows(1, length=60, max_new=20, prefix=("c",), prefix_length=30)
    s.submit(b)
    assert s.admit() == b
    b[0].entry.decoded = True
    s.finish(b[0])
    s.submit(c)
    assert s.admit() == c  # two prefix sequences: the least recently used ("a") is dropped
    assert set(s.prefixes) == {("b",), ("c",)}
    assert cache.cleared[-1] == entry_a.seq >= s.n_seq_max  # its KV is removed from the cache


def test_the_cache_grows_for_rows_that_do_not_fit():
    s, cache = scheduler(n_seq_max=8, n_ctx=2048)
    wave = rows(4, length=84, max_new=16)  # 100 cells each
    s.submit(wave)
    assert s.admit() == wave
    assert cache.sizes == [512]  # grown before they start: 400 cells, rounded up
    later = rows(4, length=84, max_new=16) + rows(1, length=84, max_new=16)
    s.submit(later[:4])
    s.submit(later[4:])
    assert s.admit() == later[:1]  # 500 of 512 cells: the next one waits, and the batch drains
    assert s.admit() == []
    for row in list(s.running):
        s.finish(row)
    assert s.admit() == later[1:5] and cache.sizes == [512, 1024]  # at least twice as large
    s2, cache2 = scheduler(n_ctx=300)
    s2.submit(rows(1, length=250, max_new=40))
    assert len(s2.admit()) == 1 and cache2.sizes == [300]  # never beyond n_ctx


def test_cancelled_rows_leave_the_queue():
    s, _ = scheduler()
    cancel = threading.Event()
    gone = rows(2, cancel=cancel)
    kept = rows(1)
    s.submit(gone)
    s.submit(kept)
    cancel.set()
    assert s.admit() == kept
    assert gone[0].call.remaining == 0 and gone[0].call.results == [[], []]
