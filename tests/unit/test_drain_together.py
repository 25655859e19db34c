"""The end of an ``ingest`` (``ordering.drain_together``): the consumers release what they still hold a slice
at a time, in turn, so each record their reorder buffers did not keep is read back from the store once for
both (``Store.read_back``) instead of once per consumer. What must hold: the alerts and the credential
inventory are those of draining each consumer whole, the records read back are half as many, and a
consumer that keeps what it holds (``live``) keeps it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from tests.unit.test_order_independence import FAST_DIR, Result, scenario_batches, snapshot_and_close

from kubetrail import ordering
from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import Decoded, SourceRef
from kubetrail.sources.formats import decode_value
from kubetrail.store import base
from kubetrail.store.base import StoreBase

SIZE = 600


@contextmanager
def rows_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many records ``records_by_index`` has read back, while inside."""
    count = [0]
    plain = StoreBase.records_by_index

    def counted(self: StoreBase, start: int, end: int) -> Iterator[Any]:
        for r in plain(self, start, end):
            count[0] += 1
            yield r

    with monkeypatch.context() as m:
        m.setattr(StoreBase, "records_by_index", counted)
        yield count


def ingest_all_held(slice_size: int | None) -> Result:
    """The scenario, with a lateness that holds every record until the end and buffers that keep almost
    none of them in memory; ``slice_size`` None drains each consumer whole (``drain_together`` off)."""
    budget = ordering.set_budget(20_000, 0)  # ~5 records of ~3 KB in memory per buffer: the rest spilled
    try:
        with tempfile.TemporaryDirectory(dir=FAST_DIR) as tmp:
            with open(f"{tmp}/detect.yaml", "w") as fh:
                fh.write("allowed_lateness_secs: 86400\n")
            pipe = open_pipeline(Options(data_dir=tmp, cluster="demo"))
            src = SourceRef(cluster="demo", node="cp-1", stream="audit-webhook:apiserver-1")
            try:
                for b in scenario_batches(SIZE):
                    items = list(decode_value(orjson.loads(b.body), f"apiserver-{b.apiserver}"))
                    pipe.commit_decoded([i for i in items if isinstance(i, Decoded)], [], src)
                held = [len(c.buffer) for c in pipe.consumers if hasattr(c, "drain_some")]
                assert len(held) == 2 and min(held) > 500, held  # everything still held at the end
                if slice_size is None:
                    pipe.consumers = [_Whole(c) for c in pipe.consumers]
                else:
                    ordering.drain_together(pipe.consumers, slice_size)
                    assert [len(c.buffer) for c in pipe.consumers if hasattr(c, "drain_some")] == [0, 0]
            finally:
                pipe.close()
            return snapshot_and_close(pipe.store)
    finally:
        ordering.set_budget(*budget)


class _Whole:
    """A consumer as before ``drain_some``: ``close`` flushes it whole."""

    def __init__(self, consumer: Any) -> None:
        self._c = consumer

    def consume(self, records: list[Any], store: Any) -> None:
        self._c.consume(records, store)

    def close(self) -> None:
        self._c.close()


def test_draining_in_turn_gives_the_same_answers_reading_back_half(monkeypatch: pytest.MonkeyPatch) -> None:
    # The store keeps 100 records read back for the other consumer (2,048 by default), fewer than the
    # scenario's ~950 held: as a busy apiserver's hours hold far more than 2,048 at the end of an ingest.
    monkeypatch.setattr(base, "READ_BACK_KEPT", 100)
    with rows_read(monkeypatch) as whole_reads:
        whole = ingest_all_held(None)
    with rows_read(monkeypatch) as turn_reads:
        in_turn = ingest_all_held(50)
    alerts, creds = in_turn
    assert len(alerts) > 20 and len(creds) > 5  # the attack is found: the comparison is not of two empty sets
    assert in_turn == whole
    assert whole_reads[0] > 1.5 * SIZE  # each consumer read back nearly every record
    assert turn_reads[0] < 0.6 * whole_reads[0], (turn_reads[0], whole_reads[0])


def test_a_live_consumer_keeps_what_it_holds() -> None:
    with tempfile.TemporaryDirectory(dir=FAST_DIR) as tmp:
        pipe = open_pipeline(Options(data_dir=tmp, cluster="demo", live=True))
        try:
            src = SourceRef(cluster="demo", node="cp-1", stream="audit-webhook:apiserver-1")
            for b in scenario_batches(SIZE)[:5]:
                items = list(decode_value(orjson.loads(b.body), "apiserver-1"))
                pipe.commit_decoded([i for i in items if isinstance(i, Decoded)], [], src)
            draining = [c for c in pipe.consumers if hasattr(c, "drain_some")]
            held = [len(c.buffer) for c in draining]
            assert len(draining) == 2 and min(held) > 0
            ordering.drain_together(pipe.consumers, 10)
            assert [len(c.buffer) for c in draining] == held
        finally:
            pipe.close()
            pipe.store.close()
