"""``ordering.released`` hands the released records over a slice at a time (a watermark jump releases a
whole window at once); the slices, joined, are exactly what ``materialise`` gives: the same records in
the same order, spilled ones read back from the store."""

from __future__ import annotations

import itertools
from pathlib import Path

from kubetrail.ordering import RECORD_OVERHEAD, ReorderBuffer, materialise, released
from kubetrail.store.sqlite import SqliteStore
from kubetrail.testing import make_records


def test_slices_join_to_what_materialise_gives(tmp_path: Path) -> None:
    store = SqliteStore.open(str(tmp_path / "d"))
    try:
        records = make_records(23)
        records.reverse()  # out of order: the buffer sorts by (time, key)
        store.append(records)
        # room for 5 records: the rest spill and are read back from the store when released
        buf = ReorderBuffer(10**12, memory_bytes=5 * (len(records[0].body) + RECORD_OVERHEAD))
        buf.add(records)
        entries = buf.drain()
        assert sum(1 for e in entries if e[3] is None) == 18
        whole = materialise(store, entries)
        parts = list(released(store, entries, n=4))
        assert [len(p) for p in parts] == [4, 4, 4, 4, 4, 3]
        joined = list(itertools.chain.from_iterable(parts))
        assert [(r.time, r.key, r.leaf_index) for r in joined] == [(r.time, r.key, r.leaf_index) for r in whole]
        assert [r.time for r in joined] == sorted(r.time for r in records)
        assert list(released(store, [])) == []
    finally:
        store.close()
