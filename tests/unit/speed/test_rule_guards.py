"""Rule guards (``detect/guards.py``) prune only rules that cannot match: the guarded engine gives the
matches of evaluating every rule on every event — built-in rules and Falco's rule files, both compat
modes, fixture traces, the demo scenario and odd shapes — and each guard reader agrees with its
field's extractor. The comparison is shown able to fail (a reader made to lie loses a match)."""

from __future__ import annotations

import glob
import itertools
from typing import Any

import pytest

from kubetrail.alerts.config import DetectSettings
from kubetrail.demo.scenario import generate
from kubetrail.detect import guards
from kubetrail.detect.consumer import build_ruleset
from kubetrail.detect.engine import RuleSet, load_rules
from kubetrail.detect.falco import ast
from kubetrail.detect.falco.compiler import PER_VALUE_LIMIT, Compiler, _per_value
from kubetrail.detect.falco.context import EventContext
from kubetrail.detect.falco.parser import parse_condition
from kubetrail.sources.files import read_paths
from kubetrail.testing import fixtures_dir

ODD: list[dict[str, Any]] = [
    {"auditID": "a", "stage": "ResponseComplete", "verb": "get", "user": {"username": "x", "groups": [5, "system:masters"]},
     "responseStatus": {"code": None}, "annotations": "nope", "sourceIPs": [1]},
    {"auditID": "a", "stage": "ResponseComplete", "verb": "create", "user": {"username": "x", "groups": "system:masters"},
     "responseStatus": {"code": 403.0}, "impersonatedUser": {"username": "admin", "groups": "system:masters"},
     "annotations": {"authentication.k8s.io/stale-token": 1, "authorization.k8s.io/decision": 7}},
    {"auditID": "a", "stage": "ResponseComplete", "verb": "delete", "user": {"username": "x", "groups": []},
     "responseStatus": {"code": "403"}, "impersonatedUser": "admin", "sourceIPs": ["192.0.2.66"],
     "annotations": {"authentication.k8s.io/legacy-token-manual-secret": {"a": 1}}},
    {"auditID": "a", "stage": "ResponseComplete", "verb": "update", "user": {"groups": [{"x": 1}, None, True]},
     "responseStatus": {"code": True}, "impersonatedUser": {"groups": ["system:masters", 3]},
     "requestObject": {"spec": [1], "type": 5}},
    {"stage": "ResponseComplete", "verb": "patch", "user": {"username": "system:anonymous",
                                                           "groups": ["system:unauthenticated"]},
     "responseStatus": {"code": 401}, "annotations": {"authorization.k8s.io/decision": "forbid"}},
    {"auditID": "a", "user": {"username": "system:anonymous"}, "annotations": {"authorization.k8s.io/decision": "allow"},
     "requestURI": "/api/v1/pods", "verb": "list", "objectRef": {"resource": "pods"}, "stage": "ResponseComplete"},
    {"auditID": "a"},
    {},
]


def _events() -> list[dict[str, Any]]:
    fixtures = [d.event for d in read_paths([str(fixtures_dir() / "corpus"), str(fixtures_dir() / "falco")])
                if hasattr(d, "event")]
    return fixtures + list(generate(events=1500).events) + ODD


def _rulesets() -> list[RuleSet]:
    falco = sorted(glob.glob(str(fixtures_dir() / "falco" / "rules" / "*.yaml")))
    out = [build_ruleset(DetectSettings(match="all"))]
    for path, compat in itertools.product(falco, ("falco", "kubetrail")):
        rs = load_rules([path], compat=compat, match="all")
        if rs.ok:
            out.append(rs)
    return out


def _full_scan(rs: RuleSet, ev: dict[str, Any]) -> list[str]:
    ctx = EventContext(ev)
    out = []
    for r in rs._active:
        try:
            if r.condition(ctx):
                out.append(r.name)
        except Exception:  # noqa: BLE001 - counted by the engine, no match
            pass
    return out


def _differences(rulesets: list[RuleSet], events: list[dict[str, Any]]) -> list[tuple[str, list[str], list[str]]]:
    diffs = []
    for rs in rulesets:
        for ev in events:
            got = [m.rule for m in rs.evaluate(ev)]
            want = _full_scan(rs, ev)
            if got != want:
                diffs.append((str(ev.get("auditID")), got, want))
    return diffs


@pytest.mark.needs_fixtures
def test_guarded_engine_gives_every_match_of_a_full_scan() -> None:
    rulesets = _rulesets()
    assert len(rulesets) >= 3 and all(rs._guards.fields for rs in rulesets[:1])
    events = _events()
    assert _differences(rulesets, events) == []
    matched = {m.rule for ev in events for m in rulesets[0].evaluate(ev)}
    assert {"Anonymous Request Allowed (kubetrail)", "Impersonation of Privileged Identity",
            "Request From Threat-Intel Address"} <= matched  # the guarded rules still fire


def test_guards_prune_the_broad_rules_for_ordinary_traffic() -> None:
    rs = build_ruleset(DetectSettings(match="all"))
    lease = {"auditID": "1", "stage": "ResponseComplete", "verb": "update", "user": {
        "username": "system:kube-controller-manager", "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.2"], "objectRef": {"resource": "leases", "namespace": "kube-system"},
        "responseStatus": {"code": 200}, "annotations": {"authorization.k8s.io/decision": "allow"}}
    names = {r.name for r in rs._for_key(rs._key(EventContext(lease)))}
    for pruned in ("Anonymous Request Allowed (kubetrail)", "Write Request Denied", "Impersonation of Privileged Identity",
                   "Legacy Service Account Token Used", "Stale Bound Token Used", "Request From Threat-Intel Address",
                   "Full Administrative Identity Used"):
        assert pruned not in names
    unguarded = {r.name for r in rs._for_key(rs._key(EventContext(lease))[:4])}
    assert "Write Request Denied" in unguarded  # what the index alone would run


@pytest.mark.parametrize("field", ["kt.impuser.name", "ka.user.groups", "ka.response.code",
                                   "jevt.value"])
def test_a_lying_reader_is_caught(field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above can fail: a reader claiming its field is missing loses matches."""
    real = guards.reader

    def lying(name: str, arg: str | None, known: frozenset[str]) -> guards.Reader:
        return (lambda ev, audit: None) if name == field else real(name, arg, known)

    monkeypatch.setattr(guards, "reader", lying)
    events = _events() if (fixtures_dir() / "corpus").exists() else list(generate(events=1500).events) + ODD
    assert _differences([build_ruleset(DetectSettings(match="all"))], events)


@pytest.mark.needs_fixtures
def test_readers_agree_with_the_extractors() -> None:
    """ADMIT, or exactly the profile value of what the field's extractor gives, in both compat modes."""
    fields: list[tuple[str, str | None, frozenset[str]]] = [
        ("ka.user.groups", None, frozenset({"system:masters", "system:unauthenticated"})),
        ("ka.user.groups", None, frozenset({"5", "true"})),
        ("kt.impuser.groups", None, frozenset({"system:masters", "3"})),
        ("kt.impuser.name", None, frozenset({"admin"})),
        ("ka.auth.decision", None, frozenset({"forbid", "allow"})),
        ("ka.response.code", None, frozenset({"401", "403", "200"})),
        ("kt.sourceip", None, frozenset({"192.0.2.66"})),
        ("jevt.value", "/annotations/authentication.k8s.io~1stale-token", frozenset()),
        ("jevt.value", "/annotations/authentication.k8s.io~1legacy-token-manual-secret", frozenset()),
        ("jevt.value", "/requestObject/type", frozenset({"kubernetes.io/service-account-token"})),
        ("jevt.value", "/requestObject/spec/containers/0", frozenset()),
        ("json.value", "/user/username", frozenset({"admin"})),
    ]
    admitted = 0
    for compat, (name, arg, known) in itertools.product(("kubetrail", "falco"), fields):
        get = Compiler(compat).operand(ast.FieldRef(name, arg))[0]
        read = guards.reader(name, arg, known)
        is_list = name.endswith("groups")
        for ev in _events():
            ctx = EventContext(ev)
            got, v = read(ev, ctx.audit), get(EventContext(ev))
            if got is guards.ADMIT:
                admitted += 1
                continue
            if v is None:
                want: Any = None
            elif is_list:
                want = tuple(k for k in sorted(known) if k in v)
            else:
                want = v if v in known else guards.PRESENT
            if want is guards.PRESENT:
                assert got is guards.PRESENT, (name, arg, ev)
            else:
                assert got == want, (name, arg, ev)
    assert admitted  # the odd shapes take the ADMIT way


def test_clauses_read_off_the_condition() -> None:
    def cl(text: str) -> list[set[tuple[str, str]]]:
        return [{(a[0], a[2]) for a in c} for c in guards.clauses(parse_condition(text))]

    assert cl("ka.verb = create and not ka.user.name = bob") == [{("ka.verb", "in")}]
    assert cl("(ka.user.name = a or ka.user.groups intersects (g)) and kt.sourceip exists") == [
        {("ka.user.name", "in"), ("ka.user.groups", "any")}, {("kt.sourceip", "present")}]
    assert cl("ka.verb = get or not ka.uri exists") == []  # an unconstrained branch: nothing known
    assert cl("ka.user.groups in (a, b)") == [{("ka.user.groups", "present")}]  # true on an empty list


def test_per_value_answers_are_the_tests_and_memory_is_bounded() -> None:
    calls: list[str] = []

    def test(v: str) -> bool:
        calls.append(v)
        return v.startswith("10.")

    t = _per_value(test)
    assert [t(v) for v in ("10.1", "8.8", "10.1", "8.8")] == [True, False, True, False]
    assert calls == ["10.1", "8.8"]  # repeats answered from memory
    for i in range(PER_VALUE_LIMIT + 5):
        t(f"v{i}")
    memo = next(c.cell_contents for c in t.__closure__ or () if isinstance(c.cell_contents, dict))
    assert len(memo) <= PER_VALUE_LIMIT
    long = "10." + "x" * 300
    assert t(long) and t(long) and calls.count(long) == 2  # long values are not kept
