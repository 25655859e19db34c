"""simulate over event dicts and files, explain's reasons, and the policy CLI commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.posture.policy.explain import explain
from kubetrail.posture.policy.generate import generate
from kubetrail.posture.policy.match import Evaluator, RequestAttrs, UserInfo
from kubetrail.posture.policy.model import parse_policy
from kubetrail.posture.policy.simulate import Simulator

DATA = Path(__file__).parents[2] / "data" / "posture"
POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: ["/healthz*"]
- level: Metadata
  resources: [{group: "", resources: ["secrets"]}]
- level: Metadata
  omitStages: [ResponseStarted]
  resources: [{group: "", resources: ["pods/exec"]}]
- level: Request
"""


def event(audit_id: str, verb: str, resource: str = "", sub: str = "", stage: str = "ResponseComplete",
          level: str = "RequestResponse", user: str = "alice", uri: str = "") -> dict[str, Any]:
    e: dict[str, Any] = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": audit_id, "stage": stage,
                         "verb": verb, "level": level, "requestURI": uri or f"/api/v1/{resource}",
                         "user": {"username": user, "groups": ["system:authenticated"]} if user else {}}
    if resource:
        e["objectRef"] = {"resource": resource, "subresource": sub, "namespace": "default", "name": "x",
                          "apiVersion": "v1"}
    return e


def test_simulate_rows_and_summary() -> None:
    """Levels, kept stages and rule index per event; lost and downgraded counted by reason, rule and class."""
    sim = Simulator(parse_policy(POLICY).policy)  # type: ignore[arg-type]
    rows = [sim.row(e) for e in [
        event("1", "get", uri="/healthz", level="Metadata"),
        event("2", "get", "secrets"),
        event("3", "get", "pods", "exec", stage="ResponseStarted", level="Metadata"),
        event("4", "create", "pods", level="Request"),
        event("5", "list", "pods", stage="RequestReceived", level="Metadata"),
    ]]
    assert [(r.level, r.stage_kept, r.rule_index) for r in rows] == [
        ("None", False, 0), ("Metadata", True, 1), ("Metadata", False, 2), ("Request", True, 3),
        ("Request", False, 3)]
    assert rows[0].path == "/healthz" and rows[2].subresource == "exec" and rows[1].user == "alice"
    assert "exec-get" in rows[2].classes and "secrets-read" in rows[1].classes
    s = sim.summary
    assert (s.events, s.kept, s.lost, s.downgraded) == (5, 2, 3, 1)
    assert s.lost_by_reason == {"level None": 1, "stage ResponseStarted omitted": 1,
                                "stage RequestReceived omitted": 1}
    assert s.lost_by_class["exec-get"] == 1 and s.downgraded_by_class["secrets-read"] == 1
    out = s.to_json()
    assert "auditID" not in out and "auditID" not in out["summary"]


def test_simulate_classes_unauthenticated_and_impersonation() -> None:
    """A 401 event (no user) matches no user rule and is tagged; impersonated events are tagged."""
    sim = Simulator(parse_policy(POLICY).policy)  # type: ignore[arg-type]
    anon = sim.row(event("a", "list", "secrets", stage="ResponseStarted", user=""))
    assert "unauthenticated" in anon.classes and anon.stage_kept
    imp = event("b", "get", "secrets")
    imp["impersonatedUser"] = {"username": "system:admin"}
    assert "impersonation" in sim.row(imp).classes


def test_explain_names_rule_and_reasons() -> None:
    """Each skipped rule says which field failed; the matching rule and stages are reported."""
    e = Evaluator(parse_policy(POLICY).policy)  # type: ignore[arg-type]
    x = explain(e, RequestAttrs(UserInfo("alice"), "get", True, "", "pods", "exec", "default", "p"))
    assert [s.matched for s in x.steps] == [False, False, True]
    assert "nonResourceURLs" in x.steps[0].reason and "pods/exec" in x.steps[1].reason
    j = x.to_json()
    assert j["rule_index"] == 2 and j["level"] == "Metadata" and j["stages_kept"] == ["ResponseComplete", "Panic"]
    none = explain(Evaluator(parse_policy(POLICY.replace("- level: Request\n", "")).policy),  # type: ignore[arg-type]
                   RequestAttrs(None, "get", False, path="/api"))
    assert none.decision.rule_index is None and not any(s.matched for s in none.steps)


def test_cli_generate_lint_roundtrip(tmp_path: Path) -> None:
    """generate | lint exits 0 at --fail-on warn for every profile; lint --json has a summary object."""
    runner = CliRunner()
    for profile in ("minimal", "recommended", "forensic"):
        out = runner.invoke(cli, ["policy", "generate", "--profile", profile])
        assert out.exit_code == 0 and out.output.startswith("# Kubernetes audit policy")
        p = tmp_path / f"{profile}.yaml"
        p.write_text(out.output)
        res = runner.invoke(cli, ["policy", "lint", str(p), "--json", "--fail-on", "warn"])
        assert res.exit_code == 0, res.output
        summary = json.loads(res.output.splitlines()[-1])
        assert summary["kind"] == "summary" and summary["errors"] == summary["warnings"] == summary["leaks"] == 0
    assert runner.invoke(cli, ["policy", "generate"]).output == generate("recommended")


def test_cli_lint_exit_codes() -> None:
    """Exit 1 at the chosen severity: cis-minimal has only warnings, gappy has errors."""
    runner = CliRunner()
    cis = str(DATA / "cis-minimal.yaml")
    assert runner.invoke(cli, ["policy", "lint", cis]).exit_code == 0
    assert runner.invoke(cli, ["policy", "lint", cis, "--fail-on", "warn"]).exit_code == 1
    gappy = runner.invoke(cli, ["policy", "lint", str(DATA / "gappy.yaml")])
    assert gappy.exit_code == 1 and "[ERROR] rules[0].verb" in gappy.output
    assert runner.invoke(cli, ["policy", "lint", "/nonexistent.yaml"]).exit_code == 2


def test_cli_simulate_json_and_text(tmp_path: Path) -> None:
    """Rows carry the contract fields; --events takes several files; the summary has no auditID."""
    pol = tmp_path / "p.yaml"
    pol.write_text(POLICY)
    f1, f2 = tmp_path / "a.jsonl", tmp_path / "b.json"
    f1.write_text(json.dumps(event("1", "get", "secrets")) + "\n" + "garbage\n")
    f2.write_text(json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                              "items": [event("2", "get", uri="/healthz")]}))
    res = CliRunner().invoke(cli, ["policy", "simulate", str(pol), "--events", str(f1), str(f2), "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.output.splitlines()]
    rows = [x for x in lines if "auditID" in x]
    assert [r["auditID"] for r in rows] == ["1", "2"]
    assert set(rows[0]) >= {"auditID", "stage", "verb", "resource", "subresource", "user", "level", "stage_kept",
                            "rule_index"}
    assert lines[-1]["summary"]["lost"] == 1 and lines[-1]["summary"]["rejected_inputs"] == 1
    text = CliRunner().invoke(cli, ["policy", "simulate", str(pol), "--events", str(f1), str(f2)])
    assert text.exit_code == 0 and "LOST" in text.output and "1 lost" in text.output


def test_cli_simulate_refuses_unknown_fields_unless_lenient(tmp_path: Path) -> None:
    """Unknown fields stop simulate (exit 2) unless --lenient; a refused policy always stops it."""
    pol = tmp_path / "p.yaml"
    pol.write_text(POLICY.replace("- level: Request", "- level: Request\n  verb: [get]"))
    ev = tmp_path / "e.jsonl"
    ev.write_text(json.dumps(event("1", "get", "pods")) + "\n")
    runner = CliRunner()
    assert runner.invoke(cli, ["policy", "simulate", str(pol), "--events", str(ev)]).exit_code == 2
    assert runner.invoke(cli, ["policy", "simulate", str(pol), "--events", str(ev), "--lenient"]).exit_code == 0
    pol.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n")
    assert runner.invoke(cli, ["policy", "simulate", str(pol), "--events", str(ev)]).exit_code == 2


def test_cli_explain(tmp_path: Path) -> None:
    """--resource with .group and /subresource forms, --path, --unauthenticated, and usage errors."""
    pol = tmp_path / "p.yaml"
    pol.write_text(generate("recommended"))
    runner = CliRunner()
    r = runner.invoke(cli, ["policy", "explain", str(pol), "--user", "alice", "--group", "system:authenticated",
                            "--verb", "get", "--resource", "pods/exec", "--namespace", "default", "--name", "web",
                            "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["level"] == "Metadata"
    r = runner.invoke(cli, ["policy", "explain", str(pol), "--user", "alice", "--verb", "create",
                            "--resource", "certificatesigningrequests.certificates.k8s.io"])
    assert r.exit_code == 0 and "level RequestResponse" in r.output
    r = runner.invoke(cli, ["policy", "explain", str(pol), "--unauthenticated", "--verb", "get", "--path", "/healthz"])
    assert r.exit_code == 0 and "rules[0]" in r.output and "level None" in r.output
    assert runner.invoke(cli, ["policy", "explain", str(pol), "--user", "a", "--verb", "get"]).exit_code == 2


def test_explain_ignores_a_name_on_create(tmp_path: Path) -> None:
    """A create carries no name in the apiserver's request info, so resourceNames never match it."""
    policy = tmp_path / "p.yaml"
    policy.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n"
                      "- level: Request\n  resources: [{group: '', resources: [configmaps], resourceNames: [coredns]}]\n"
                      "- level: Metadata\n")
    args = ["policy", "explain", str(policy), "--user", "u", "--resource", "configmaps", "--namespace", "kube-system",
            "--name", "coredns", "--json"]
    create = CliRunner().invoke(cli, [*args, "--verb", "create"])
    update = CliRunner().invoke(cli, [*args, "--verb", "update"])
    assert json.loads(create.stdout)["rule_index"] == 1 and "ignored" in create.stderr
    assert json.loads(update.stdout)["rule_index"] == 0
