"""The detection consumer's fast paths give what the general paths give, on awkward inputs:

* pod_ips ``note`` (facts read from the parsed event at arrival) = ``observe`` reading the event
  itself, whether the parsed event is still cached or was dropped (parsed again from the body);
* machinery's remembered in-profile triples = judging every record;
* the reorder buffer's tuple-free ``add`` = a plain sorted reference (order, late records);
* the whole consumer with its fast paths = the consumer with them switched off (alerts, state).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from kubetrail import workers
from kubetrail.alerts.config import DetectSettings, StatefulConfig
from kubetrail.demo.scenario import generate
from kubetrail.detect import consumer as detect_consumer
from kubetrail.detect.stateful.machinery import MachineryProfile
from kubetrail.detect.stateful.pod_ips import FACTS, NO_FACTS, PodTokenElsewhere
from kubetrail.detect.stateful.state import StateStore
from kubetrail.ordering import ReorderBuffer
from kubetrail.record import Decoded, Record, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.stages.redaction_key import load_or_create
from kubetrail.store.testing import execute as sql
from kubetrail.testing import make_event, make_records

from ._ingest import ingested

CFG = StatefulConfig(learning_secs=60)
_ids = itertools.count(1)


def _event(t: int, **kw: Any) -> dict[str, Any]:
    extra = kw.pop("user_extra", None)
    n = next(_ids)
    stamp = f"2025-01-01T00:{t // 60:02d}:{t % 60:02d}.{n:06d}Z"
    ev = make_event(f"aid-{n:06d}", time=stamp, **kw)
    if extra is not None:
        ev["user"]["extra"] = extra
    return ev


def _record(ev: dict[str, Any], n: int) -> Record:
    r = to_record(Decoded(event=orjson.loads(orjson.dumps(ev)), format="event", position=str(n)),
                  SourceRef(stream="audit"))
    r.leaf_index = n
    return r


SA = "system:serviceaccount:shop:web"
KUBELET = {"user": "system:node:n1", "groups": ["system:nodes", "system:authenticated"]}


def _pod_ips_events() -> list[dict[str, Any]]:
    bound = {"authentication.kubernetes.io/pod-name": ["web-1"], "authentication.kubernetes.io/node-name": ["n1"]}
    odd_extras: list[Any] = [{"authentication.kubernetes.io/pod-name": "web-1"}, {"authentication.kubernetes.io/pod-name": []},
                             {"authentication.kubernetes.io/pod-name": [7], "authentication.kubernetes.io/node-name": [None]},
                             ["pod-name"], {"authentication.kubernetes.io/pod-name": ["ghost"]}, None]
    evs = [
        _event(0, user=SA, user_extra=bound, source_ips=["10.244.9.9"]),
        _event(1, verb="patch", resource="pods", subresource="status", namespace="shop", name="web-1",
               requestObject={"status": {"podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}, "x"],
                                         "hostIP": " 192.168.1.10 ", "hostIPs": [{"ip": 3}]}}, **KUBELET),
        _event(2, verb="create", resource="pods", namespace="shop", name="web-2",
               responseObject={"spec": {"nodeName": "n2"}, "status": {"podIPs": [{"ip": "10.244.2.2"}]}},
               requestObject={"status": "nope", "spec": []}, user="alice"),
        _event(3, verb="patch", resource="nodes", subresource="status", namespace="", name="n1",
               requestObject={"status": {"addresses": [{"address": "192.168.1.11"}, {"address": "n1"}, "junk",
                                                       {"address": 5}]}}, **KUBELET),
        _event(4, verb="update", resource="nodes", namespace="", name="n2", responseObject={"status": {"addresses": None}}),
        _event(5, verb="patch", resource="pods", subresource="status", namespace="shop", name="web-1", code=409,
               requestObject={"status": {"podIP": "10.244.7.7"}}, **KUBELET),
    ]
    for t, ip in enumerate(["10.244.1.5", "192.168.1.10", "192.168.1.11", "127.0.0.1", "10.244.2.7", "34.120.1.2",
                            "::1", "fd00::5", "not-an-ip", "10.244.2.2"], start=10):
        evs.append(_event(t, user=SA, user_extra=bound, source_ips=[ip]))
    for t, extra in enumerate(odd_extras, start=30):
        evs.append(_event(t, user=SA, user_extra=extra, source_ips=["34.120.9.9"]))
    evs.append(_event(40, user="system:serviceaccount:shop:web:extra", user_extra=bound, source_ips=["34.1.1.1"]))
    evs.append(_event(41, verb="delete", resource="pods", namespace="shop", name="web-1", **KUBELET))
    evs.append(_event(42, user=SA, user_extra=bound, source_ips=["10.244.1.5"]))
    return evs


def _alerts(found: list[Any]) -> list[tuple[Any, ...]]:
    return [(a.rule, a.priority, a.time, a.subject, a.output, orjson.dumps(a.fields, option=orjson.OPT_SORT_KEYS),
             a.dedup_key, [e.key for e in a.evidence]) for a in found]


def _run(detector: Any, records: list[Record], before: Callable[[Record], None]) -> tuple[list[Any], dict[Any, Any]]:
    out = []
    for r in records:
        before(r)
        out.append(_alerts(detector.observe(r)))
    return out, dict(detector.state._cache)


def test_pod_ips_facts_noted_at_arrival_are_what_observe_reads() -> None:
    events = _pod_ips_events()

    def records() -> list[Record]:
        return [_record(ev, n) for n, ev in enumerate(events)]

    general = _run(PodTokenElsewhere(StateStore(None), CFG), records(), lambda r: None)
    noted = PodTokenElsewhere(StateStore(None), CFG)
    assert _run(noted, records(), noted.note) == general

    def noted_then_dropped(r: Record) -> None:  # the reorder buffer dropped the parsed event after arrival
        noted.note(r)
        del r.__dict__["_event"]

    noted = PodTokenElsewhere(StateStore(None), CFG)
    assert _run(noted, records(), noted_then_dropped) == general

    def dropped(r: Record) -> None:  # never noted, event parsed again from the body
        r.__dict__.pop("_event", None)
        assert FACTS not in r.__dict__

    assert _run(PodTokenElsewhere(StateStore(None), CFG), records(), dropped) == general
    rules = [a for step in general[0] for a in step]
    assert len(rules) >= 4 and {a[1] for a in rules} == {"Warning", "Critical"}  # the check does fire


def test_pod_ips_facts_found_by_a_worker_are_what_observe_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A preparation worker finds the facts while it has the event parsed and sends them with its
    results (MessagePack: tuples come back as lists); the writer's ``note`` keeps them and never parses
    the body again — with the same alerts and detector state as one process."""
    events = _pod_ips_events()
    general = _run(PodTokenElsewhere(StateStore(None), CFG), [_record(ev, n) for n, ev in enumerate(events)],
                   lambda r: None)
    monkeypatch.setattr(workers, "_state", {})
    workers._init(load_or_create(str(tmp_path / "key")), DetectSettings())
    chunk = b"".join(orjson.dumps(ev) + b"\n" for ev in events)
    shipped = [ready.record for ready in workers.unpack(workers.prepare(chunk, 1, SourceRef(stream="audit")), "f")]
    assert len(shipped) == len(events)
    assert all(FACTS in r.__dict__ and "_event" not in r.__dict__ for r in shipped)
    assert sum(r.__dict__[FACTS] is not NO_FACTS for r in shipped) >= 15  # found, not all "nothing"
    for n, r in enumerate(shipped):
        r.leaf_index = n
    parsed: list[int | None] = []
    real_event = Record.event

    def event(self: Record) -> dict[str, Any]:
        parsed.append(self.leaf_index)
        return real_event(self)

    monkeypatch.setattr(Record, "event", event)
    noted = PodTokenElsewhere(StateStore(None), CFG)
    found = _run(noted, shipped, noted.note)
    assert found == general
    # the writer parses a body only to write an alert's fields, never for the facts
    assert set(parsed) == {n for n, step in enumerate(found[0]) if step}

    monkeypatch.undo()
    monkeypatch.setattr(workers, "_state", {})  # stateful detection off: nothing is found, nothing sent
    workers._init(load_or_create(str(tmp_path / "key")), DetectSettings(stateful=StatefulConfig(enabled=False)))
    off = workers._prepare(chunk, 1, SourceRef(stream="audit"), None)
    assert off.facts == [None] * len(events)


def _machinery_events() -> list[dict[str, Any]]:
    kcm = {"user": "system:kube-controller-manager", "userAgent": "kube-controller-manager/v1.30.0"}
    ctl = {"user": "system:serviceaccount:kube-system:job-controller", "userAgent": "kube-controller-manager/v1.30"}
    evs = []
    for t, ip in enumerate(["10.0.0.2", "10.0.0.3", "10.0.0.2", "127.0.0.1"]):  # learning: the pool fills
        evs.append(_event(t, source_ips=[ip], **kcm))
    rnd = random.Random(7)
    users = [kcm, ctl, {**KUBELET, "userAgent": "kubelet/v1.30"}, {"user": "system:node:n1", "groups": [],
                                                                   "userAgent": "kubelet/v1.30"},
             {"user": "system:apiserver", "userAgent": "kube-apiserver/v1.30"},
             {"user": "system:kube-scheduler", "userAgent": "kube-scheduler/v1"},
             {"user": "system:serviceaccount:kube-system:coredns", "userAgent": "coredns/1.11"},
             {"user": "system:serviceaccount:other:app", "userAgent": "curl/8"}, {"user": "sam", "userAgent": "x"}]
    agents = ["curl/8.0", "", "kubectl/v1.30", None]
    ips = ["10.0.0.2", "10.0.0.3", "10.0.0.9", "127.0.0.1", "::1", "34.120.1.2", "192.168.1.10", "192.168.1.77"]
    for t in range(100, 400):
        who = dict(rnd.choice(users))
        agent = rnd.choice(agents)
        if agent is not None:
            who["userAgent"] = agent
        evs.append(_event(t, source_ips=[rnd.choice(ips)], code=rnd.choice([200, 200, 200, 401]), **who))
    return evs


def test_machinery_remembered_triples_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    records = [_record(ev, n) for n, ev in enumerate(_machinery_events())]
    fast = _run(MachineryProfile(StateStore(None), CFG), records, lambda r: None)
    monkeypatch.setattr(MachineryProfile, "_settle", lambda self, seen: None)
    general = _run(MachineryProfile(StateStore(None), CFG), records, lambda r: None)
    assert fast == general
    assert sum(len(step) for step in general[0]) >= 20  # out-of-profile agents and addresses alert


def _reference(arrivals: list[list[Any]], lateness: int) -> list[tuple[list[str], list[str]]]:
    """What the buffer must do, by brute force: per arrival, the late keys and the released keys."""
    held: list[Any] = []
    frontier: tuple[int, str] | None = None
    newest: int | None = None
    out = []
    for batch in arrivals:
        late = [r for r in batch if frontier is not None and (r.time, r.key) <= frontier]
        held += [r for r in batch if not (frontier is not None and (r.time, r.key) <= frontier)]
        newest = max([r.time for r in batch] + ([newest] if newest is not None else []), default=None)
        held.sort(key=lambda r: (r.time, r.key))
        ready = [r for r in held if newest is not None and r.time <= newest - lateness]
        held = held[len(ready):]
        if ready:
            frontier = (ready[-1].time, ready[-1].key)
        out.append(([r.key for r in late], [r.key for r in ready]))
    return out


def test_reorder_buffer_add_against_a_sorted_reference() -> None:
    rnd = random.Random(3)
    for _ in range(30):
        records = make_records(rnd.randint(1, 60), body_bytes=10)
        for r in records:
            r.time = rnd.choice([1, 2, 2, 3, 5, 8, 8, 9]) * 10  # many ties: the key breaks them
        rnd.shuffle(records)
        cuts = sorted(rnd.sample(range(len(records) + 1), min(3, len(records) + 1)))
        arrivals = [records[a:b] for a, b in itertools.pairwise([0, *cuts, len(records)])]
        arrivals.append(rnd.sample(records, min(3, len(records))))  # sent again: late when released already
        lateness = rnd.choice([0, 10, 30])
        buf = ReorderBuffer(lateness, memory_limit=rnd.choice([3, 1000]))
        got = []
        for batch in arrivals:
            late = buf.add(batch)
            got.append(([r.key for r in late], [e[1] for e in buf.ready()]))
        assert got == _reference(arrivals, lateness)


def _ingest(path: Path, data: Path, key: Path) -> dict[str, Any]:
    with ingested(path, data, key) as s:
        return {"alerts": sorted(tuple(r) for r in sql(s, "SELECT origin, rule, subject, priority, time, output, "
                                                          "fields_json, dedup_key FROM alerts")),
                "state": sorted((d, k, v) for d, k, v in sql(s, "SELECT detector, key, value FROM detector_state")
                                if d != "silence")}


def test_consumer_with_and_without_its_fast_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = list(generate(events=2500).events) + _pod_ips_events() + _machinery_events()
    path = tmp_path / "audit.log"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    key = tmp_path / "redaction.key"
    load_or_create(str(key))
    fast = _ingest(path, tmp_path / "fast", key)
    monkeypatch.delattr(PodTokenElsewhere, "note")
    monkeypatch.setattr(MachineryProfile, "_settle", lambda self, seen: None)
    monkeypatch.setattr(detect_consumer.DetectConsumer, "_observers",
                        lambda self, verb, resource: tuple(self.detectors))
    general = _ingest(path, tmp_path / "general", key)
    assert len({a[1] for a in general["alerts"]}) >= 8
    assert fast == general
