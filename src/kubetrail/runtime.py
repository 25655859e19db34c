"""Process-wide settings for the processes that stream records (``ingest``, ``run``, the collector,
preparation workers): today, how CPython's cyclic garbage collector runs.

A batch holds thousands of parsed events and records (~150 container objects per event), and the
reorder buffers hold more; with CPython's default thresholds (700, 10, 10) every collection walks
them again, which cost as much CPU as the work itself (an orjson.loads of a 2.9 KB event kept in a
list: 55 µs with the defaults, 13 µs without collections; bench/RESULTS.md). The pipeline makes
almost no reference cycles, so collections are made rare instead: the start-up heap (rules,
compiled conditions, modules) is frozen out of every collection, and the young generation is
collected after 100,000 allocations, by when most of a batch's objects were freed by reference count.
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (100_000, 50, 100)
_tuned: list[bool] = []


def tune_gc() -> None:
    """Apply the settings above, once per process (later calls do nothing)."""
    if _tuned:
        return
    _tuned.append(True)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
