"""The writer's consumers' fast paths (issue 18, fourth pass) give what the general paths give:

* pod_ips facts decoded from the body's few fields (a record prepared by a worker carries no parsed
  event) = the facts of the parsed event, on realistic and awkward bodies (shapes the decoding
  refuses, integers beyond 64 bits, empty objects), and the detector's alerts and state with them.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from kubetrail.demo.scenario import generate
from kubetrail.detect.stateful import pod_ips
from kubetrail.detect.stateful.pod_ips import PodTokenElsewhere
from kubetrail.detect.stateful.state import StateStore
from kubetrail.record import Record

from .test_detect_fast_paths import CFG, KUBELET, SA, _event, _pod_ips_events, _record, _run

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
            out.append(pod_ips._facts(r))
        except Exception as exc:  # noqa: BLE001 - the same failure either way is the same answer
            out.append(type(exc).__name__)
    return out


def test_pod_ips_facts_from_the_body_are_the_parsed_events(monkeypatch: pytest.MonkeyPatch) -> None:
    records = _bodies()
    reference = _facts(records, False, monkeypatch)
    assert _facts(records, True, monkeypatch) == reference
    facts = [f for f in reference if isinstance(f, tuple) and f != pod_ips._NO_FACTS]
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
