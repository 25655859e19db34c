"""The writer's consumers' fast paths (issue 18, fourth pass) give what the general paths give:

* pod_ips facts decoded from the body's few fields (a record prepared by a worker carries no parsed
  event) = the facts of the parsed event, on realistic and awkward bodies (shapes the decoding
  refuses, integers beyond 64 bits, empty objects), and the detector's alerts and state with them;
* ``from_match``'s three fields decoded from the body = the parsed event's (subject, group values);
* first_seen's memory of requests that changed nothing = looking every request up (whole consumer);
* credential ids normalised once per text = ``normalise_credential_id`` every time;
* the reorder buffer's accounting summed in C = the held entries' sizes, after random adds and takes;
* ``credentials.consumer.after`` = filtering every record by the frontier;
* ``workers.unpack`` giving a chunk's records one shared ``SourceRef`` = the decoded ones.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from kubetrail.alerts import alert as alert_module
from kubetrail.alerts.alert import from_match
from kubetrail.credentials import link
from kubetrail.credentials.consumer import after
from kubetrail.credentials.events import normalise_credential_id
from kubetrail.demo.scenario import generate
from kubetrail.detect.engine import Match
from kubetrail.detect.stateful import first_seen, pod_ips
from kubetrail.detect.stateful.pod_ips import PodTokenElsewhere
from kubetrail.detect.stateful.state import StateStore
from kubetrail.ordering import ReorderBuffer
from kubetrail.record import Record
from kubetrail.stages.redaction_key import load_or_create
from kubetrail.testing import make_records

from .test_detect_fast_paths import CFG, KUBELET, SA, _event, _pod_ips_events, _record, _run
from .test_detector_dispatch import _ingest

BOUND = {"authentication.kubernetes.io/pod-name": ["web-1"], "authentication.kubernetes.io/node-name": ["n1"]}
# an integer beyond 64 bits (orjson reads it as a float, msgspec as an int), put in the body after it is
# built (orjson writes no such integer: a stored body can only hold one if written by something else)
BIG = "__big__"


def _awkward_events() -> list[dict[str, Any]]:
    pods = dict(verb="patch", resource="pods", subresource="status", namespace="shop", name="web-1", **KUBELET)
    nodes = dict(verb="patch", resource="nodes", subresource="status", namespace="", name="n1", **KUBELET)
    objs: list[Any] = [
        {}, {"kind": "Pod"}, {"status": None}, {"status": {}}, {"spec": None, "status": {"podIP": None}},
        {"spec": {"nodeName": BIG}}, {"spec": {"nodeName": 5}}, {"spec": {"nodeName": ""}}, {"spec": {"nodeName": "n9"}},
        {"status": {"podIP": BIG, "podIPs": [{"ip": BIG}, BIG, None, {"ip": "10.1.1.1"}]}},
        {"status": {"podIPs": "10.2.2.2", "hostIPs": {"ip": "10.3.3.3"}}}, {"status": {"hostIP": 1.5, "hostIPs": 0}},
        {"status": {"addresses": [{"address": BIG}, {"address": "::1"}, [], {"address": "10.9.9.9"}]}},
        {"status": {"addresses": {"address": "10.8.8.8"}}}, {"status": {"addresses": "10.7.7.7"}},
        {"status": []}, {"spec": "x"}, [], "text", 7, None,
    ]
    evs = []
    for t, o in enumerate(objs):
        evs.append(_event(t, requestObject=o, **pods))
        evs.append(_event(t, responseObject=o, requestObject={"status": {"podIP": "10.4.4.4"}}, **pods))
        evs.append(_event(t, requestObject=o, **nodes))
    extras: list[Any] = [BOUND, {"authentication.kubernetes.io/pod-name": [BIG]}, {"authentication.kubernetes.io/pod-name": [1.5]},
                         {"authentication.kubernetes.io/pod-name": ["p"], "authentication.kubernetes.io/node-name": [BIG]},
                         {"authentication.kubernetes.io/node-name": ["n1"]}, {"x": "pod-name"}, [], "pod-name", None, BIG]
    for t, extra in enumerate(extras, start=50):
        evs.append(_event(t, user=SA, user_extra=extra, source_ips=["34.120.9.9"]))
        evs.append(_event(t, user=SA, user_extra=extra, source_ips=["10.4.4.4"], **{k: v for k, v in pods.items()
                                                                                    if k not in ("user", "groups")}))
    for user in (None, [], "alice", {"extra": None}, {"extra": []}, {"username": SA}):
        ev = _event(70, user=SA, user_extra=BOUND)
        ev["user"] = user
        evs.append(ev)
    return evs


def _bodies() -> list[Record]:
    events = list(generate(events=1500).events) + _pod_ips_events() + _awkward_events()
    records = [_record(ev, n) for n, ev in enumerate(events)]
    for r in records:
        r.body = r.body.replace(b'"__big__"', b"123456789012345678901234567890")
    return records


def _facts(records: list[Record], fast: bool, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    monkeypatch.setattr(pod_ips, "FAST_FACTS", fast)
    out = []
    for r in records:
        r.__dict__.pop("_event", None)  # as a worker's record arrives: the body only
        try:
            out.append(pod_ips.event_facts(r))
        except Exception as exc:  # noqa: BLE001 - the same failure either way is the same answer
            out.append(type(exc).__name__)
    return out


def test_pod_ips_facts_from_the_body_are_the_parsed_events(monkeypatch: pytest.MonkeyPatch) -> None:
    records = _bodies()
    reference = _facts(records, False, monkeypatch)
    assert _facts(records, True, monkeypatch) == reference
    facts = [f for f in reference if isinstance(f, tuple) and f != pod_ips.NO_FACTS]
    assert any(f[1] for f in facts) and any(f[2] for f in facts) and any(f[0] and f[0][0] for f in facts)


def test_pod_ips_alerts_and_state_the_same_with_decoded_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    events = _pod_ips_events() + [e for e in _awkward_events() if isinstance(e.get("requestObject", {}), dict)]
    events = [e for e in events if not isinstance(orjson.loads(orjson.dumps(e)).get("user"), (list, str, type(None)))]

    def run(fast: bool) -> Any:
        monkeypatch.setattr(pod_ips, "FAST_FACTS", fast)
        detector = PodTokenElsewhere(StateStore(None), CFG)

        def worker_record(r: Record) -> None:
            r.__dict__.pop("_event", None)
            detector.note(r)

        records = [_record(ev, n) for n, ev in enumerate(events)]
        for r in records:
            r.body = r.body.replace(b'"__big__"', b"123456789012345678901234567890")
        return _run(detector, records, worker_record)

    fast = run(True)
    assert fast == run(False)
    assert any(step for step in fast[0])


def _who_events() -> list[dict[str, Any]]:
    evs = []
    users: list[Any] = [{"username": "alice"}, {"username": "system:anonymous"}, {"username": ""}, {"username": 5},
                        {"username": BIG}, {}, None, [], "bob", BIG]
    ips: list[Any] = [["10.0.0.1"], ["10.0.0.1", "34.1.1.1"], [], [BIG], ["x", 7], "10.0.0.1", None, {"a": 1}]
    anns: list[Any] = [None, {}, {"authentication.k8s.io/legacy-token": "system:serviceaccount:a:b"},
                       {"authentication.k8s.io/legacy-token": "system:serviceaccount:a:b",
                        "authentication.k8s.io/legacy-token-autogenerated-secret": "b-token"},
                       {"authentication.k8s.io/legacy-token": BIG}, [], "text"]
    for n, (user, ip, ann) in enumerate(zip(users * 6, ips * 8, anns * 9, strict=False)):
        ev = _event(n % 60, source_ips=["10.9.9.9"])
        ev["user"], ev["sourceIPs"], ev["annotations"] = user, ip, ann
        if n % 3 == 0:
            ev["user"] = user if not isinstance(user, dict) else {**user, "extra": {"authentication.kubernetes.io/"
                                                                                   "credential-id": ["JTI=x"]}}
        evs.append(ev)
    return evs


def test_from_match_reads_the_three_fields_as_the_parsed_event(monkeypatch: pytest.MonkeyPatch) -> None:
    match = Match(rule="r", priority="Warning", priority_level=4, output="o", tags=("t",), fields={"a": 1, "b": None})
    records = [_record(ev, n) for n, ev in enumerate(list(generate(events=800).events) + _who_events())]
    for r in records:
        r.body = r.body.replace(b'"__big__"', b"123456789012345678901234567890")

    def alerts(fast: bool) -> list[Any]:
        monkeypatch.setattr(alert_module, "FAST_WHO", fast)
        out = []
        for r in records:
            r.__dict__.pop("_event", None)  # as a worker's record arrives
            a = from_match(match, r)
            out.append((a.subject, a.group, a.fields, a.time, [e.key for e in a.evidence]))
        return out

    fast = alerts(True)
    assert fast == alerts(False)
    assert {"alice", "unknown@10.0.0.1", "unknown"} <= {a[0] for a in fast}
    assert any(a[1]["credential"].startswith("legacy:") for a in fast)


def test_first_seen_memory_changes_no_alert_and_no_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = list(generate(events=2500).events)
    path = tmp_path / "audit.log"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    key = tmp_path / "redaction.key"
    load_or_create(str(key))
    remembered = _ingest(path, tmp_path / "memo", key)
    monkeypatch.setattr(first_seen, "SETTLED_MEMO", False)
    looked_up = _ingest(path, tmp_path / "lookup", key)
    assert any(a[0] == "stateful" and a[1].startswith("K8s Identity Used") or "Credential Used" in a[1]
               for a in looked_up["alerts"])
    assert remembered == looked_up


def test_credential_ids_normalised_once_per_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(link, "NORMALISED_LIMIT", 7)
    link._NORMALISED.clear()
    texts = ["X509SHA256=AB CD", " JTI= 1 ", "JTI=1", "x509sha256=ab\tcd", "OTHER = v ", "plain", "", "=", "JTI=",
             " jti =q", "X509SHA256=", "a=b=c"] * 3
    rnd = random.Random(5)
    rnd.shuffle(texts)
    assert [link._normalised(t) for t in texts] == [normalise_credential_id(t) for t in texts]
    assert len(link._NORMALISED) <= 7


def test_reorder_buffer_accounting_matches_the_held_entries() -> None:
    rnd = random.Random(11)
    records = make_records(400, body_bytes=30)
    for r in records:
        r.time = rnd.randrange(0, 10**6)
        r.body = r.body * rnd.randrange(1, 4)
        if rnd.random() < 0.5:
            r.__dict__["_event"] = {}
    buf = ReorderBuffer(50_000, memory_limit=150, memory_bytes=120 * 1100, parsed_bytes=40 * 1100)
    taken: list[Any] = []
    for i in range(0, len(records), 37):
        taken += buf.add(records[i:i + 37], now_ns=i)
        taken += buf.ready() if rnd.random() < 0.7 else []
        held = buf._items[buf._head:]
        assert buf._in_memory == sum(1 for e in held if e[3] is not None)
        assert buf._bytes == sum(e[4] for e in held) and buf._parsed == sum(e[5] for e in held)
        assert all((e[4] > 0) == (e[3] is not None) for e in held)
    taken += buf.drain()
    assert buf._in_memory == buf._bytes == buf._parsed == 0 and len(buf) == 0


def test_after_the_frontier_as_filtering_every_record() -> None:
    rnd = random.Random(3)
    for _ in range(200):
        records = make_records(rnd.randint(0, 12), body_bytes=5)
        for r in records:
            r.time = rnd.randrange(0, 6)
        records.sort(key=lambda r: (r.time, r.key))
        frontier = None if rnd.random() < 0.2 else (rnd.randrange(-1, 7), rnd.choice(["", "m", "z" * 80]))
        if records and rnd.random() < 0.3:
            frontier = (records[0].time, records[0].key)
        expected = [r for r in records if frontier is None or (r.time, r.key) > frontier]
        assert after(records, frontier) == expected


def test_unpack_shares_one_source_per_chunk(tmp_path: Path) -> None:
    from kubetrail import workers
    from kubetrail.record import SourceRef

    workers._init(load_or_create(str(tmp_path / "redaction.key")))
    lines = b"".join(orjson.dumps(e) + b"\n" for e in generate(events=300).events) + b"not json\n"
    source = SourceRef(cluster="c", node="n", stream="file:a.log")
    data = workers.prepare(lines, 1, source)
    decoded = workers._decoder.decode(data)
    items = list(workers.unpack(data, "a.log"))
    records = [i.record for i in items if isinstance(i, workers.Ready)]
    assert len(records) == len(decoded.records) >= 300 and len(items) == len(records) + 1
    assert all(r.source is records[0].source for r in records) and records[0].source == source
    assert [(r.key, r.body, r.meta) for r in records] == [(r.key, r.body, r.meta) for r in decoded.records]
