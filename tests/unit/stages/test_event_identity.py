"""The record key (docs/specs/event-identity.md): the spec's test vectors, read from the spec itself,
and the properties the key must have whatever the transport."""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path

import orjson
import pytest

from kubetrail.record import Decoded, SourceRef
from kubetrail.sources.files import read_stream
from kubetrail.stages.extract import to_record
from kubetrail.stages.identity import canonical_bytes, canonical_event, event_key, legacy_key
from kubetrail.testing import make_event

SPEC = Path(__file__).resolve().parents[3] / "docs" / "specs" / "event-identity.md"
SECTION = re.compile(r"^### (Vector \d+[^\n]*)\n(.*?)(?=^### |\Z)", re.M | re.S)
BLOCK = re.compile(r"^```(delivery|canonical)(?: (\S+))?\n(.*?)\n```$", re.M | re.S)


def vectors() -> list[tuple[str, str, list[tuple[str, str]], list[str]]]:
    out = []
    for title, body in SECTION.findall(SPEC.read_text(encoding="utf-8")):
        key = re.search(r"^key: `([0-9a-f]{64})`$", body, re.M)
        assert key, f"{title}: no key line"
        blocks = BLOCK.findall(body)
        deliveries = [(name, text) for kind, name, text in blocks if kind == "delivery"]
        canonical = [text for kind, _name, text in blocks if kind == "canonical"]
        out.append((title, key.group(1), deliveries, canonical))
    return out


def keys_of(text: str) -> list[str]:
    """Read a delivery as kubetrail reads a file (format detection included), then redact and key."""
    items = list(read_stream(io.BytesIO(text.encode("utf-8")), "vector"))
    assert items and all(isinstance(i, Decoded) for i in items), items
    return [to_record(i, SourceRef()).key for i in items]


def test_the_spec_has_vectors() -> None:
    found = vectors()
    assert len(found) >= 4
    assert sum(len(d) for _t, _k, d, _c in found) >= 10


@pytest.mark.parametrize(("title", "key", "deliveries", "canonical"), vectors(), ids=lambda v: str(v)[:12])
def test_vector(title: str, key: str, deliveries: list[tuple[str, str]], canonical: list[str]) -> None:
    assert deliveries, title
    for name, text in deliveries:
        assert keys_of(text) == [key], f"{title}: delivery {name}"
    for text in canonical:
        first = deliveries[0][1]
        event = orjson.loads(first)
        assert canonical_bytes(event) == text.encode("utf-8"), title


def test_envelope_and_order_do_not_matter_but_every_field_does() -> None:
    ev = make_event("id-1", verb="create", resource="pods", name="web",
                    requestObject={"kind": "Pod", "metadata": {"name": "web"}, "spec": {"containers": []}})
    base = event_key(ev)
    bare = {k: v for k, v in ev.items() if k not in ("kind", "apiVersion")}
    assert event_key(bare) == base
    assert event_key(dict(reversed(list(ev.items())))) == base
    for field, value in (("stage", "ResponseStarted"), ("auditID", "id-2"), ("stageTimestamp", "2024-01-01T00:00:00Z"),
                         ("userAgent", "curl/8"), ("sourceIPs", ["10.9.9.9"]), ("kind", "Event2")):
        assert event_key({**ev, field: value}) != base, field
    nested = orjson.loads(orjson.dumps(ev))
    nested["requestObject"]["spec"]["containers"] = [{"name": "c"}]
    assert event_key(nested) != base
    assert event_key({**ev, "apiVersion": "audit.k8s.io/v2"}) != base  # not an envelope we know: content


def test_v1beta1_fields_that_are_not_derived_stay_content() -> None:
    ev = make_event("id-1")
    beta = {**ev, "apiVersion": "audit.k8s.io/v1beta1", "timestamp": "1999-01-01T00:00:00Z",
            "metadata": {"creationTimestamp": None, "name": "x"}}
    canon = canonical_event(beta)
    assert canon["timestamp"] == "1999-01-01T00:00:00Z"
    assert canon["metadata"] == {"creationTimestamp": None, "name": "x"}
    assert event_key(beta) != event_key(ev)
    assert canonical_event(ev) is not ev and "kind" in ev  # the input is left alone


def test_the_key_is_over_the_redacted_event() -> None:
    ev = make_event("id-s", verb="create", resource="secrets", name="db",
                    requestObject={"kind": "Secret", "metadata": {"name": "db"}, "data": {"password": "aHVudGVyMg=="}})
    record = to_record(Decoded(orjson.loads(orjson.dumps(ev)), "event", "1"), SourceRef())
    assert b"aHVudGVyMg==" not in record.body
    assert record.key == event_key(orjson.loads(record.body))
    assert record.key != event_key(ev)  # the un-redacted event would give another key


def test_legacy_key_is_the_v1_definition() -> None:
    body = b'{"auditID":"a"}'
    import hashlib

    assert legacy_key(body) == hashlib.sha256(b"kubetrail-audit-key/v1\n" + body).hexdigest()


def deliveries_of(events: list[dict]) -> dict[str, bytes]:
    """The same events as a log file, a webhook EventList, CRI- and Docker-wrapped logs and v1beta1."""
    line = b"".join(orjson.dumps(e) + b"\n" for e in events)
    items = [{k: v for k, v in e.items() if k not in ("kind", "apiVersion")} for e in events]
    eventlist = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}) + b"\n"
    cri = b"".join(b"2024-05-01T10:00:09.1Z stdout F " + orjson.dumps(e) + b"\n" for e in events)
    docker = b"".join(orjson.dumps({"log": orjson.dumps(e).decode() + "\n", "stream": "stdout",
                                    "time": "2024-05-01T10:00:09Z"}) + b"\n" for e in events)
    beta = b"".join(orjson.dumps({**e, "apiVersion": "audit.k8s.io/v1beta1",
                                  "metadata": {"creationTimestamp": e["stageTimestamp"][:19] + "Z"},
                                  "timestamp": e["requestReceivedTimestamp"][:19] + "Z"}) + b"\n" for e in events)
    return {"line": line, "eventlist": eventlist, "cri": cri, "docker": docker, "v1beta1": beta}


def test_every_order_of_the_five_deliveries_stores_each_event_once(tmp_path: Path) -> None:
    """Log line, EventList item, CRI, Docker, v1beta1 — in each of the 120 orders (each order with
    its own three events, in one store): one record per event; a reused auditID+stage with other
    content is a second record."""
    from kubetrail.pipeline import Options, open_pipeline

    pipe = open_pipeline(Options(data_dir=str(tmp_path / "d"), detect=False))
    try:
        for n, order in enumerate(itertools.permutations(["line", "eventlist", "cri", "docker", "v1beta1"])):
            events = [make_event(f"order-{n}-{i}", user=f"u{i}", time=f"2024-05-01T10:00:0{i}.{n:06d}Z")
                      for i in range(3)]
            deliveries = deliveries_of(events)
            before = pipe.store.size()
            for name in order:
                pipe.ingest_items(read_stream(io.BytesIO(deliveries[name]), name), SourceRef(stream=name))
            assert pipe.store.size() == before + 3, order
            variant = orjson.dumps({**events[1], "user": {"username": "mallory", "groups": []}}) + b"\n"
            pipe.ingest_items(read_stream(io.BytesIO(variant), "variant"), SourceRef(stream="variant"))
            assert pipe.store.size() == before + 4, order
        assert pipe.summary.rejected == 0
    finally:
        pipe.close()
        pipe.store.close()


def test_event_key_is_the_hash_of_the_tag_and_canonical_bytes() -> None:
    """event_key spells canonical_bytes out and hashes the version tag once (issue 18, fourth pass):
    the same key as hashing the two together, for v1, v1beta1 and envelope-less events."""
    import hashlib

    from kubetrail.demo.scenario import generate
    from kubetrail.stages.identity import KEY_VERSION

    events = [dict(ev) for ev in generate(seed=4, events=200).events]
    events += [{k: v for k, v in ev.items() if k not in ("kind", "apiVersion")} for ev in events[:50]]
    events += [{**ev, "apiVersion": "audit.k8s.io/v1beta1", "timestamp": "2024-01-01T00:00:00Z"} for ev in events[:50]]
    for ev in events:
        assert event_key(ev) == hashlib.sha256(KEY_VERSION + canonical_bytes(ev)).hexdigest()
    assert len({event_key(ev) for ev in events}) > 150
