"""The generated index key (``detect/fastkey.py``) is the general one: for every ruleset shape (the
built-in rules, Falco's rule files in both compat modes, rules naming every kind of guard field
with awkward values) and every event (fixtures, the demo scenario, odd shapes), ``RuleSet._key``
equals ``_key_general`` (``_index_values`` and the guard readers), and the field cache it leaves
holds exactly what the index fields' extractors give. The comparison can fail (a wrong spec is
caught), and a reader without a spec is called as it is."""

from __future__ import annotations

from typing import Any

import pytest

from kubetrail.alerts.config import DetectSettings
from kubetrail.demo.scenario import generate
from kubetrail.detect import guards
from kubetrail.detect.consumer import build_ruleset
from kubetrail.detect.engine import INDEX_FIELDS, RuleSet, _index_values, _memo_key, load_rules
from kubetrail.detect.falco.context import EventContext

from .test_rule_guards import ODD, _events, _rulesets

# rules whose guards read every reader kind, with values that take each branch: a list field with
# many names, JSON-looking names (non-string elements then ADMIT), a lone-string list, codes, a
# pointer with a value list, a pointer through a list index (always ADMIT)
AWKWARD_RULES = """
- list: many_groups
  items: [g1, g2, g3, g4, g5, g6, g7, g8, g9, system:masters]
- rule: many
  desc: d
  condition: ka.user.groups intersects (many_groups) and ka.response.code in ("200", "404")
  output: o
  priority: WARNING
  source: k8s_audit
- rule: jsonish
  desc: d
  condition: ka.user.groups intersects ("5", "true", "system:masters") or kt.impuser.groups intersects ("3", "x")
  output: o
  priority: WARNING
  source: k8s_audit
- rule: pointers
  desc: d
  condition: >
    jevt.value[/requestObject/type] in ("kubernetes.io/service-account-token", "Opaque")
    and json.value[/spec/containers/0/image] exists and jevt.value[/a~1b/c~0d] exists
  output: o
  priority: WARNING
  source: k8s_audit
- rule: strs
  desc: d
  condition: >
    (kt.impuser.name = admin or ka.auth.decision = forbid) and kt.sourceip in ("10.0.0.1", "192.0.2.66")
  output: o
  priority: WARNING
  source: k8s_audit
"""

MORE_ODD: list[dict[str, Any]] = [
    {"auditID": "a", "verb": ["get"], "objectRef": ["pods"], "user": ["alice"], "annotations": None},
    {"auditID": "a", "verb": "get", "objectRef": {"resource": {"x": 1}, "subresource": ["exec"]},
     "user": {"username": 5, "groups": ["g1", "g9", "system:masters", "g1"]}, "sourceIPs": [],
     "responseStatus": {"code": 200}},
    {"auditID": "a", "user": {"username": "admin", "groups": ["5", 5, True]}, "sourceIPs": ["10.0.0.1", 7],
     "responseStatus": {"code": 404}, "impersonatedUser": {"username": "admin", "groups": "x"},
     "requestObject": {"type": "Opaque"}, "spec": {"containers": [{"image": "i"}]}, "a/b": {"c~d": 0}},
    {"auditID": "a", "user": {"groups": ["true"]}, "sourceIPs": ["192.0.2.66"], "responseStatus": {"code": "200"},
     "impersonatedUser": {"groups": [3, "x"]}, "requestObject": {"type": 3}, "a/b": {"c~d": None},
     "annotations": {"authorization.k8s.io/decision": "forbid"}},
    {"user": {"username": "admin", "groups": ["system:masters"]}, "sourceIPs": ["10.0.0.1"],
     "impersonatedUser": {"username": "admin"}, "requestObject": {"type": "Opaque"}, "a/b": {"c~d": 1},
     "responseStatus": {"code": 200}},
    {"auditID": "a", "responseStatus": {"code": False}, "requestObject": "Opaque", "a/b": [{"c~d": 1}]},
    {"auditID": "a", "responseStatus": {"code": 200.0}, "requestObject": {"type": ["Opaque"]}},
    {"auditID": "a", "responseStatus": ["code"], "user": {"groups": []}, "impersonatedUser": {"groups": []}},
]


def _awkward() -> RuleSet:
    rs = load_rules([], texts={"awkward.yaml": AWKWARD_RULES}, match="all")
    rs.raise_for_errors()
    return rs


def _all_rulesets() -> list[RuleSet]:
    return [*_rulesets(), _awkward(), load_rules([], texts={"awkward.yaml": AWKWARD_RULES}, compat="falco")]


def _mismatches(rulesets: list[RuleSet], events: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for n, rs in enumerate(rulesets):
        cache_keys = [_memo_key(rs.compat, f) for f in INDEX_FIELDS]
        for ev in events:
            fast, general = EventContext(ev), EventContext(ev)
            got, want = rs._key(fast), rs._key_general(general)
            seeded = tuple(fast.cache[k] for k in cache_keys)
            if got != want or seeded != _index_values(general):
                out.append((n, ev))
    return out


@pytest.mark.needs_fixtures
def test_generated_key_is_the_general_key() -> None:
    rulesets = _all_rulesets()
    kinds = {getattr(r, "spec", ("none",))[0] for rs in rulesets for r in rs._guards.readers}
    assert {"list", "str", "code", "sourceip", "pointer", "none"} <= kinds  # every branch of fastkey is built
    assert _mismatches(rulesets, _events() + MORE_ODD) == []


def test_generated_key_on_generated_and_odd_events() -> None:
    """Without the fixture corpus: the demo scenario and the odd shapes, built-in and awkward rules."""
    events = list(generate(events=1500).events) + ODD + MORE_ODD
    assert _mismatches([build_ruleset(DetectSettings(match="all")), _awkward()], events) == []
    matched = {m.rule for ev in MORE_ODD for m in _awkward().evaluate(ev)}
    assert {"many", "jsonish", "strs"} <= matched  # the awkward rules do fire where they should


def test_a_wrong_spec_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real = guards._sourceip

    def wrong(known: frozenset[str]) -> guards.Reader:
        read = real(known)
        read.spec = ("sourceip", frozenset())  # type: ignore[attr-defined]  # forgets the named values
        return read

    monkeypatch.setattr(guards, "_sourceip", wrong)
    assert _mismatches([_awkward()], MORE_ODD)


def test_a_reader_without_spec_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    real = guards.reader

    def plain(name: str, arg: str | None, known: frozenset[str]) -> guards.Reader:
        inner = real(name, arg, known)
        return lambda ev, audit: (calls.append(ev), inner(ev, audit))[1]

    monkeypatch.setattr(guards, "reader", plain)
    rs = _awkward()
    assert "C" in rs._keyfn.source and _mismatches([rs], MORE_ODD) == []
    assert calls
