"""Every built-in rule's YAML cases (tests/data/detect/cases/*.yaml), in one parametrised test.

A case file is a list of cases::

    - rule: Exec or Attach Into Pod      # the rule under test
      name: websocket exec                # what the case shows
      expect: alert                       # alert | quiet
      event: {verb: get, objectRef: {resource: pods, subresource: exec}}   # merged into BASE_EVENT

``event`` is deep-merged into ``BASE_EVENT`` (a mapping replaces key by key; ``null`` deletes a
key). ``alert`` means the rule is among the matches (rule matching ``all``); ``quiet`` means it is
not. The meta-test fails when a built-in rule has no alerting or no quiet case.
"""

from __future__ import annotations

import copy
import glob
import os
from typing import Any

import pytest
import yaml

from kubetrail.detect.engine import builtin_rule_paths, load_rules

CASES_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "data", "detect", "cases")

BASE_EVENT: dict[str, Any] = {
    "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": "case-0001",
    "stage": "ResponseComplete", "verb": "get", "requestURI": "/api/v1/namespaces/default/pods/web",
    "user": {"username": "alice@example.com", "groups": ["developers", "system:authenticated"]},
    "sourceIPs": ["10.1.2.3"], "userAgent": "kubectl/v1.30.1 (linux/amd64) kubernetes/6911225",
    "objectRef": {"resource": "pods", "namespace": "default", "name": "web", "apiVersion": "v1"},
    "responseStatus": {"metadata": {}, "code": 200},
    "requestReceivedTimestamp": "2025-01-01T10:00:00.000000Z", "stageTimestamp": "2025-01-01T10:00:00.010000Z",
    "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""},
}


def merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = merge(base.get(k), v)
        return out
    return copy.deepcopy(over)


def load_cases() -> list[dict[str, Any]]:
    cases = []
    for path in sorted(glob.glob(os.path.join(CASES_DIR, "*.yaml"))):
        with open(path, encoding="utf-8") as fh:
            for i, case in enumerate(yaml.safe_load(fh) or []):
                case["id"] = f"{os.path.basename(path)}:{i}:{case['rule']}:{case['expect']}:{case.get('name', '')}"
                cases.append(case)
    return cases


CASES = load_cases()
RULESET = load_rules(builtin_rule_paths(), match="all")


def test_builtin_rules_load_cleanly() -> None:
    assert RULESET.ok, [str(d) for d in RULESET.errors]
    assert not RULESET.warnings, [str(d) for d in RULESET.warnings]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_rule_case(case: dict[str, Any]) -> None:
    assert case["expect"] in ("alert", "quiet")
    event = merge(BASE_EVENT, case.get("event") or {})
    matched = [m.rule for m in RULESET.evaluate(event)]
    if case["expect"] == "alert":
        assert case["rule"] in matched, f"expected {case['rule']!r}; matched {matched}"
    else:
        assert case["rule"] not in matched, f"{case['rule']!r} should stay quiet; matched {matched}"


def test_every_builtin_rule_has_alert_and_quiet_cases() -> None:
    names = {r.name for r in RULESET.rules}
    alert = {c["rule"] for c in CASES if c["expect"] == "alert"}
    quiet = {c["rule"] for c in CASES if c["expect"] == "quiet"}
    assert not {c["rule"] for c in CASES} - names, "cases name rules that do not exist"
    assert not names - alert, f"rules without an alerting case: {sorted(names - alert)}"
    assert not names - quiet, f"rules without a quiet case: {sorted(names - quiet)}"
