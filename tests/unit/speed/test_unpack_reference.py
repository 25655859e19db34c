"""``workers.unpack`` (issue 18): what it leaves on each record is what it left before its fast paths
(the row head as decoded, and a record whose facts are all "nothing" given the shared values at once),
compared with the previous per-fact loop kept here as the reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from kubetrail import workers
from kubetrail.alerts.config import DetectSettings
from kubetrail.detect.stateful import EVENT_FACTS
from kubetrail.record import SourceRef
from kubetrail.stages.redaction_key import load_or_create
from kubetrail.testing import make_event

from .test_detect_fast_paths import _pod_ips_events


def reference_facts(found: list[Any] | None) -> dict[str, Any]:
    """``unpack``'s facts before the "nothing found" fast path."""
    out: dict[str, Any] = {}
    if found is not None:
        for (key, _, none), value in zip(EVENT_FACTS, found, strict=True):
            out[key] = none if value is None else value
    return out


def test_unpack_leaves_what_the_reference_leaves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "_state", {})
    workers._init(load_or_create(str(tmp_path / "key")), DetectSettings())
    events = _pod_ips_events() + [make_event(f"u-{i}", user=f"ü-{i}", code=[200, 403][i % 2]) for i in range(20)]
    lines = [orjson.dumps(ev) for ev in events]
    lines.insert(3, b"{not json")  # a reject between records: the order and positions still line up
    encoded = workers.prepare(b"".join(line + b"\n" for line in lines), 1, SourceRef(stream="audit"))
    chunk = workers._decoder.decode(encoded)
    shipped = [item.record for item in workers.unpack(encoded, "f") if isinstance(item, workers.Ready)]
    assert len(shipped) == len(events) == len(chunk.facts)
    assert sum(f is not None and f != [None] * len(EVENT_FACTS) for f in chunk.facts) >= 15  # some were found
    assert sum(f == [None] * len(EVENT_FACTS) for f in chunk.facts) >= 20  # most: nothing
    for r, found, head in zip(shipped, chunk.facts, chunk.heads, strict=True):
        want = reference_facts(found)
        got = {k: r.__dict__[k] for k, _, _ in EVENT_FACTS if k in r.__dict__}
        assert got.keys() == want.keys()
        assert all(got[k] is want[k] or got[k] == want[k] for k in want)
        assert all(got[k] is none for k, _, none in EVENT_FACTS if found == [None] * len(EVENT_FACTS))
        assert type(r.__dict__["_row_head"]) is tuple and r.__dict__["_row_head"] == head


def test_facts_not_sent_are_not_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk without facts (stateful detection off, or a log line: None) sets none on the records."""
    monkeypatch.setattr(workers, "_state", {})
    workers._init(load_or_create(str(tmp_path / "key")), DetectSettings())
    chunk = workers._prepare(orjson.dumps(make_event("a")) + b"\n", 1, SourceRef(stream="audit"), None)
    chunk.facts = [None]
    (item,) = workers.unpack(chunk, "f")
    assert not any(k in item.record.__dict__ for k, _, _ in EVENT_FACTS)  # type: ignore[union-attr]
