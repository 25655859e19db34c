"""Process-wide settings for the processes that stream records (``ingest``, ``run``, the collector,
preparation workers): today, how CPython's cyclic garbage collector runs.

A batch holds thousands of parsed events and records (~150 container objects per event), and the
reorder buffers hold more; with CPython's default thresholds (700, 10, 10) every collection walks
them again, which cost as much CPU as the work itself (an orjson.loads of a 2.9 KB event kept in a
list: 55 µs with the defaults, 13 µs without collections; bench/RESULTS.md). The pipeline makes
almost no reference cycles (none at all in a whole ``ingest`` of the benchmark's 100,000 events),
so collections are made rare instead:

* ``tune_gc``: the start-up heap (rules, compiled conditions, modules) is frozen out of every
  collection, and the young generation is collected only after ``GC_THRESHOLDS[0]`` allocations;
* ``batch_done`` (the pipeline calls it after each batch went through the consumers): what is
  still alive then — held records in the reorder buffers, detector and inventory caches — is
  frozen too, so the next batch's collections never walk it again (walking a held parsed event
  costs ~40 µs: gen-0 collections over the records a batch keeps were ~15 µs per event of
  ``ingest``). Frozen objects are still freed by reference counting as usual; only cyclic garbage
  waits, for the full collection every ``FULL_COLLECT_BATCHES`` batches (unfreeze, collect, freeze).
"""

from __future__ import annotations

import gc
import threading

GC_THRESHOLDS = (200_000, 50, 100)
FULL_COLLECT_BATCHES = 100  # batches between full collections (2,000 events each in ``ingest``)
_tuned: list[bool] = []
_lock = threading.Lock()
_batches = [0]


def tune_gc() -> None:
    """Apply the settings above, once per process (later calls do nothing)."""
    if _tuned:
        return
    _tuned.append(True)
    # The young generations only: start-up leaves no cyclic garbage worth a full walk of the heap
    # (none found at `ingest`'s start), and the walk cost 35-55 ms of every start (issue 18: that many
    # ms of one core before the preparation workers fork). Old-generation garbage frozen here is still
    # freed by the first periodic full collection (``batch_done`` unfreezes first).
    gc.collect(1)
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def batch_done() -> None:
    """After a batch: freeze what survived it; every ``FULL_COLLECT_BATCHES`` calls, a full collection
    first (cyclic garbage made since the last one is freed then). Does nothing unless ``tune_gc`` ran
    (a library user keeps CPython's defaults)."""
    if not _tuned:
        return
    with _lock:
        _batches[0] += 1
        if _batches[0] % FULL_COLLECT_BATCHES == 0:
            gc.unfreeze()
            gc.collect()
        gc.freeze()
