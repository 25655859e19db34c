"""``extract.extract_meta`` (rewritten for speed in issue 18, fourth pass) against the plain reading
it replaced, kept here as the reference: the same ``AuditMeta`` — every field, every lossy note in
the same order — for the demo traffic, every hostile case that decodes to an event, and events
built to take each branch (missing or mistyped sub-objects, the v1beta1 ``timestamp`` fallback,
the name of a create taken from its object, codes that no column holds).
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hostile_cases import LINE_FORMATS, cases

from kubetrail.demo.scenario import generate
from kubetrail.record import AuditMeta, Decoded
from kubetrail.sources.formats import decode_value, loads_lossy
from kubetrail.stages.extract import CREDENTIAL_ID, extract_meta
from kubetrail.timefmt import parse_rfc3339_ns

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def _strs(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _indexable_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def _time_ns(event: dict[str, Any], field: str, notes: list[str]) -> int | None:
    value = event.get(field)
    ns = parse_rfc3339_ns(value)
    if ns is None and value is not None:
        notes.append(f"{field} is not an RFC 3339 time between 1678 and 2262: not indexed")
    return ns


def reference(event: dict[str, Any], lossy: list[str] | None = None) -> AuditMeta:
    """extract_meta as it was before the fourth pass (main at 9d5aac9), line for line."""
    notes = list(lossy or [])
    user = event.get("user") if isinstance(event.get("user"), dict) else {}
    imp = event.get("impersonatedUser") if isinstance(event.get("impersonatedUser"), dict) else {}
    ref = event.get("objectRef") if isinstance(event.get("objectRef"), dict) else {}
    status = event.get("responseStatus") if isinstance(event.get("responseStatus"), dict) else {}
    extra = user.get("extra") if isinstance(user.get("extra"), dict) else {}
    cred = extra.get(CREDENTIAL_ID)
    code = status.get("code")
    name = ref.get("name") or ""
    if not name and event.get("verb") == "create":
        for field in ("responseObject", "requestObject"):
            obj = event.get(field)
            md = obj.get("metadata") if isinstance(obj, dict) else None
            if isinstance(md, dict) and isinstance(md.get("name"), str):
                name = md["name"]
                break
    if code is not None and not _indexable_int(code):
        notes.append("responseStatus.code is not a 64-bit integer: not indexed")
        code = None
    received = _time_ns(event, "requestReceivedTimestamp", notes)
    if received is None and "timestamp" in event:
        received = _time_ns(event, "timestamp", notes)
    stage_time = _time_ns(event, "stageTimestamp", notes)
    return AuditMeta(
        audit_id=str(event.get("auditID", "")), stage=str(event.get("stage", "")),
        level=str(event.get("level", "")), verb=str(event.get("verb", "")), user=str(user.get("username", "")),
        groups=_strs(user.get("groups")), uid=str(user.get("uid", "")),
        impersonated_user=str(imp.get("username", "")), impersonated_groups=_strs(imp.get("groups")),
        resource=str(ref.get("resource", "")), subresource=str(ref.get("subresource", "")),
        api_group=str(ref.get("apiGroup", "")), api_version=str(ref.get("apiVersion", "")),
        namespace=str(ref.get("namespace", "")), name=str(name), code=code,
        source_ips=_strs(event.get("sourceIPs")), user_agent=str(event.get("userAgent", "")),
        request_uri=str(event.get("requestURI", "")),
        credential_id=str(cred[0]) if isinstance(cred, list) and cred else "",
        request_received=received, stage_time=stage_time, lossy=notes,
    )


BASE = {"auditID": "a", "verb": "get", "stage": "ResponseComplete"}
T = "2024-05-01T10:00:00.123456Z"
BRANCHES: list[dict[str, Any]] = [
    {},
    {"verb": None, "auditID": None, "stage": 7, "level": ["x"], "userAgent": {"a": 1}, "requestURI": 1.5},
    {"user": None, "impersonatedUser": "x", "objectRef": [], "responseStatus": "500"},
    {"user": {"username": None, "groups": None, "uid": 3, "extra": None}},
    {"user": {"groups": ["a", 1, None, {"b": 2}], "extra": {CREDENTIAL_ID: []}}},
    {"user": {"extra": {CREDENTIAL_ID: "X509SHA256=ab"}}}, {"user": {"extra": {CREDENTIAL_ID: [7, "x"]}}},
    {"user": {"extra": ["not", "a", "dict"]}}, {"user": {"groups": "g"}},
    {"impersonatedUser": {"username": "bob", "groups": ["g1", 2]}}, {"impersonatedUser": {"groups": "g"}},
    {"sourceIPs": ["1.2.3.4", 5]}, {"sourceIPs": "1.2.3.4"}, {"sourceIPs": None},
    {"responseStatus": {"code": True}}, {"responseStatus": {"code": 1 << 63}}, {"responseStatus": {"code": -(1 << 63)}},
    {"responseStatus": {"code": 2.5}}, {"responseStatus": {"code": None}}, {"responseStatus": {}},
    {"verb": "create", "objectRef": {"resource": "pods"}, "requestObject": {"metadata": {"name": "req"}},
     "responseObject": {"metadata": {"name": "resp"}}},
    {"verb": "create", "objectRef": {"name": ""}, "requestObject": {"metadata": {"name": "req"}},
     "responseObject": {"metadata": {"name": 3}}},
    {"verb": "create", "requestObject": {"metadata": None}, "responseObject": "x"},
    {"verb": "update", "requestObject": {"metadata": {"name": "req"}}},
    {"objectRef": {"name": 0, "namespace": None, "resource": "r", "subresource": "s", "apiGroup": "g",
                   "apiVersion": "v1"}},
    {"requestReceivedTimestamp": T, "stageTimestamp": T},
    {"requestReceivedTimestamp": "bad", "timestamp": "2024-05-01T10:00:00Z", "stageTimestamp": "2300-01-01T00:00:00Z"},
    {"requestReceivedTimestamp": None, "timestamp": None},
    {"timestamp": "also bad"}, {"requestReceivedTimestamp": 12, "timestamp": 13, "stageTimestamp": 14},
    {"timestamp": "2024-05-01T10:00:00Z"}, {"requestReceivedTimestamp": "bad"},
    {"requestReceivedTimestamp": "2024-05-01T10:00:00+02:00", "stageTimestamp": "2024-05-01T10:00:00.5z"},
]


def _events() -> list[dict[str, Any]]:
    events = [dict(ev) for ev in generate(seed=11, events=300).events]
    events += [{**BASE, **b} for b in BRANCHES] + [b for b in BRANCHES if b]
    for case in cases(copies=1):
        if case.fmt not in LINE_FORMATS:
            continue
        try:
            value, note = loads_lossy(case.json())
        except orjson.JSONDecodeError:
            continue
        events += [d.event for d in decode_value(value, "x") if isinstance(d, Decoded)]
    return events


@pytest.mark.parametrize("lossy", [None, [], ["the format could not carry groups"]])
def test_extract_meta_is_the_reference(lossy: list[str] | None) -> None:
    events = _events()
    assert len(events) > 1000
    for ev in events:
        mine = extract_meta(copy.deepcopy(ev), lossy)
        theirs = reference(copy.deepcopy(ev), lossy)
        assert mine == theirs, ev
        for field in ("groups", "impersonated_groups", "source_ips", "lossy"):
            assert type(getattr(mine, field)) is list
        if lossy is not None:
            assert mine.lossy is not lossy  # a copy: the caller's list is never changed


def test_a_wrong_reference_is_caught() -> None:
    """The comparison can fail: a changed note order or a dropped fallback differs."""
    ev = {**BASE, "requestReceivedTimestamp": "bad", "timestamp": "2024-05-01T10:00:00Z",
          "responseStatus": {"code": True}}
    mine = extract_meta(ev)
    assert mine.request_received == parse_rfc3339_ns("2024-05-01T10:00:00Z")
    assert mine.lossy == ["responseStatus.code is not a 64-bit integer: not indexed",
                          "requestReceivedTimestamp is not an RFC 3339 time between 1678 and 2262: not indexed"]
    assert mine != reference({**ev, "timestamp": "2024-05-01T10:00:01Z"})


def test_positional_order_is_auditmeta_s() -> None:
    """extract_meta builds AuditMeta by position: a field added or moved there must be added here
    (and to the call) too, or values would land in the wrong field."""
    assert AuditMeta.__struct_fields__ == (
        "audit_id", "stage", "level", "verb", "user", "groups", "uid", "impersonated_user", "impersonated_groups",
        "resource", "subresource", "api_group", "api_version", "namespace", "name", "code", "source_ips",
        "user_agent", "request_uri", "credential_id", "request_received", "stage_time", "lossy")
