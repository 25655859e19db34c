"""Lint verdicts on the reference policies, the generated profiles, and each rule mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetrail.posture.policy.generate import PROFILES, generate
from kubetrail.posture.policy.lint import LintReport, lint
from kubetrail.posture.policy.model import load_policy_file, parse_policy

DATA = Path(__file__).parents[2] / "data" / "posture"


def report(name: str) -> LintReport:
    return lint(load_policy_file(DATA / name))


def verdicts(r: LintReport) -> dict[str, str]:
    return {row.cls.id: row.verdict for row in r.coverage}


def codes(r: LintReport) -> set[tuple[str, str]]:
    return {(f.code, f.where) for f in r.findings}


@pytest.mark.parametrize("profile", PROFILES)
def test_generated_policy_lints_clean(profile: str) -> None:
    """Every profile: every class ok, no leak, no finding at warn or above."""
    r = lint(parse_policy(generate(profile)))
    assert set(verdicts(r).values()) == {"ok"}
    assert not r.leaks
    assert [f for f in r.findings if f.severity != "info"] == []
    assert not r.fails("warn")


def test_profiles_differ_in_volume() -> None:
    """minimal < recommended < forensic in how much body they keep for RBAC and workloads."""
    from kubetrail.posture.policy.classes import CLASSES
    from kubetrail.posture.policy.lint import coverage
    from kubetrail.posture.policy.match import Evaluator

    def level_of(profile: str, cls_id: str) -> str:
        e = Evaluator(parse_policy(generate(profile)).policy)  # type: ignore[arg-type]
        return coverage(e, next(c for c in CLASSES if c.id == cls_id)).level_text
    assert [level_of(p, "rbac-bindings") for p in PROFILES] == ["Request", "RequestResponse", "RequestResponse"]
    assert [level_of(p, "deployments") for p in PROFILES] == ["Request", "Request", "RequestResponse"]


def test_gke_policy_verdicts() -> None:
    """GKE: CSR bodies ok, TokenRequest only at Metadata, core Events dropped entirely; no leaks."""
    r = report("gke.yaml")
    v = verdicts(r)
    assert v["csr-create"] == "ok" and v["secrets-read"] == "ok" and v["exec-get"] == "ok"
    assert v["tokenrequest"] == "shallow"
    assert v["events-deletion"] == "missing"
    assert not r.leaks
    assert r.count("error") == 1 and r.fails("error")


def test_docs_example_verdicts() -> None:
    """Docs example: CSRs only at Metadata, kube-system ConfigMaps at Request (leak), pods in full."""
    r = report("docs-example.yaml")
    v = verdicts(r)
    assert v["csr-create"] == "shallow" and v["rbac-bindings"] == "shallow"
    assert v["coredns-configmap"] == "leak" and v["aws-auth"] == "leak"
    assert v["configmaps"] == "ok"  # default namespace falls to the Metadata rule
    assert v["privileged-pod"] == "ok" and v["tokenrequest"] == "ok"
    assert {c.cls.id for c in r.leaks} == {"coredns-configmap", "aws-auth"}


def test_cis_minimal_verdicts() -> None:
    """A lone Metadata rule: nothing missing, nothing leaked, bodies missing (warn) -> exit 0 at error."""
    r = report("cis-minimal.yaml")
    v = verdicts(r)
    assert "missing" not in v.values() and "leak" not in v.values()
    assert v["csr-create"] == "shallow" and v["secrets-read"] == "ok"
    assert not r.fails("error") and r.fails("warn")


def test_gappy_policy_verdicts() -> None:
    """Each planted mistake is found."""
    r = report("gappy.yaml")
    v = verdicts(r)
    assert v["secrets-read"] == "leak" and v["tokenrequest"] == "leak"
    assert v["privileged-pod"] == "missing"  # the `verb:` typo makes the None rule cover every pods request
    assert v["unauthenticated"] == "missing" and v["exec-get"] == "shallow"
    c = codes(r)
    for expected in [("unknown-field", "rules[0].verb"), ("exec-create-only", "rules[1].verbs"),
                     ("impossible-verb", "rules[2].verbs"), ("misplaced-group", "rules[3].resources[0].resources"),
                     ("not-a-wildcard", "rules[5].namespaces"), ("misplaced-group", "rules[6].resources[0].group"),
                     ("unreachable-rule", "rules[8]"), ("omits-response-started", "omitStages")]:
        assert expected in c, expected


def test_refused_policy_reports_only_load_errors() -> None:
    """A policy the apiserver refuses has no coverage rows and a 'refused' error."""
    r = lint(parse_policy("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n"))
    assert r.coverage == [] and "refused" in {f.code for f in r.findings}


def test_shadowing_by_narrower_rule_is_a_warning() -> None:
    """A rule covered by an earlier, narrower-than-catch-all rule is unreachable (warn)."""
    r = lint(parse_policy("""apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
  resources: [{group: "", resources: ["pods/*"]}]
- level: Request
  verbs: [get]
  resources: [{group: "", resources: ["pods/log", "pods"]}]
- level: Request
  resources: [{group: "", resources: ["secrets"]}, {group: apps}]
- level: Metadata
"""))
    f = [x for x in r.findings if x.code == "unreachable-rule"]
    assert [(x.where, x.severity) for x in f] == [("rules[1]", "warn")]


def test_rule_check_details() -> None:
    """Case, singular names, HTTP verbs on resource rules, group '*', resourceNames on create."""
    r = lint(parse_policy("""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  verbs: [post]
  resources: [{group: "", resources: ["Pods", "secret"]}]
- level: None
  verbs: [create]
  resources: [{group: "*", resources: ["configmaps"], resourceNames: [x]}]
- level: None
  verbs: [GET]
  nonResourceURLs: ["/healthz"]
- level: Metadata
"""))
    c = {(f.code, f.where) for f in r.findings}
    assert ("resource-case", "rules[0].resources[0].resources") in c
    assert ("resource-singular", "rules[0].resources[0].resources") in c
    assert ("impossible-verb", "rules[0].verbs") in c and ("impossible-verb", "rules[2].verbs") in c
    assert ("group-wildcard", "rules[1].resources[0].group") in c
    assert ("names-on-create", "rules[1].resources[0].resourceNames") in c
