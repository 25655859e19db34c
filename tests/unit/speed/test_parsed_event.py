"""The parsed event a record carries from ``to_record`` (so consumers never parse the body again),
and the reorder buffer's memory bounds on what it holds."""

from __future__ import annotations

import orjson

from kubetrail.ordering import (
    DEFAULT_MEMORY_BYTES,
    DEFAULT_PARSED_BYTES,
    RECORD_OVERHEAD,
    ReorderBuffer,
    set_budget,
)
from kubetrail.record import Decoded, Record, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.testing import make_event

SRC = SourceRef(stream="file:t")
S = 1_000_000_000


def rec(i: int, **kw: object) -> Record:
    ev = make_event(f"id-{i}", time=f"2024-05-01T10:00:{i % 60:02d}.000000Z", name=f"p{i}", **kw)  # type: ignore[arg-type]
    r = to_record(Decoded(ev, "event", str(i)), SRC)
    r.leaf_index = i
    return r


def test_the_cached_event_is_the_stored_body_parsed() -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    for r in (rec(1), rec(2, verb="create", resource="secrets",
                          requestObject={"kind": "Secret", "data": {"password": "aHVudGVyMg=="}}),
              rec(3, annotations={"note": f"Bearer {token}"})):
        assert "_event" in r.__dict__
        assert r.event() == orjson.loads(r.body)  # the redacted event, exactly what was serialised
        assert b"aHVudGVyMg" not in r.body and token.encode() not in r.body


def test_held_records_keep_their_parsed_event_only_within_the_budget() -> None:
    records = [rec(i) for i in range(6)]
    size = len(records[0].body) + RECORD_OVERHEAD
    buf = ReorderBuffer(lateness_ns=S, parsed_bytes=size * 2 + size // 2)
    buf.add(records)
    assert ["_event" in r.__dict__ for r in records] == [True, True, False, False, False, False]
    assert all(r.event() == orjson.loads(r.body) for r in records)  # parsed again on demand
    buf.drain()
    assert buf._parsed == 0 and buf._bytes == 0 and buf._in_memory == 0


def test_beyond_the_memory_bytes_only_the_position_is_held() -> None:
    records = [rec(i) for i in range(5)]
    size = len(records[0].body) + RECORD_OVERHEAD
    buf = ReorderBuffer(lateness_ns=S, memory_bytes=size * 3)
    buf.add(records)
    held = buf.drain()
    assert [e[3] is not None for e in held] == [True, True, True, False, False]
    assert [e[2] for e in held] == [0, 1, 2, 3, 4]


def test_a_record_body_takes_its_length_in_memory() -> None:
    """orjson's output keeps its buffer's capacity (several times the JSON for a 1–3 KB event); the
    records the reorder buffers hold must not."""
    import tracemalloc

    big = {"kind": "ConfigMap", "data": {f"k{i}": "v" * 40 for i in range(60)}}  # ~3 KB of JSON
    decoded = [Decoded(make_event(f"id-{i}", verb="update", resource="configmaps", requestObject=big), "event", str(i))
               for i in range(100)]
    tracemalloc.start()
    try:
        bodies = [to_record(d, SRC).body for d in decoded]
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = sum(len(b) for b in bodies)
    assert size > 100 * 2500
    assert held < size * 1.2, (held, size)  # without the exact copy: ~2.7x


def test_set_budget_caps_the_buffers_built_afterwards() -> None:
    """The consumers' own process lowers the caps of the buffers its consumers build (they take no
    caps of their own): records beyond them are held as positions only, parsed events dropped."""
    records = [rec(i) for i in range(5)]
    size = len(records[0].body) + RECORD_OVERHEAD
    before = ReorderBuffer(lateness_ns=S)
    try:
        set_budget(memory_bytes=size * 2, parsed_bytes=size)
        buf = ReorderBuffer(lateness_ns=S)
        buf.add(records)
        held = buf.drain()
        assert [e[3] is not None for e in held] == [True, True, False, False, False]
        assert ["_event" in e[3].__dict__ for e in held[:2] if e[3] is not None] == [True, False]
    finally:
        set_budget(DEFAULT_MEMORY_BYTES, DEFAULT_PARSED_BYTES)
    assert (before.memory_bytes, before.parsed_bytes) == (DEFAULT_MEMORY_BYTES, DEFAULT_PARSED_BYTES)
    assert ReorderBuffer(lateness_ns=S).memory_bytes == DEFAULT_MEMORY_BYTES
