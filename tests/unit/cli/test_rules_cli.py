"""`kubetrail rules lint|test|list`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.testing import fixtures_dir

FALCO = fixtures_dir() / "falco"
GOOD = """
- list: users
  items: [eve]
- macro: kcreate
  condition: ka.verb=create
- rule: eve creates
  desc: d
  condition: kcreate and ka.user.name in (users)
  output: eve made %ka.target.resource
  priority: WARNING
  source: k8s_audit
"""
EVENT = {"auditID": "a-1", "stage": "ResponseComplete", "verb": "create", "user": {"username": "eve"},
         "objectRef": {"resource": "pods"}, "requestURI": "/api/v1/pods",
         "stageTimestamp": "2024-01-01T00:00:00Z", "requestReceivedTimestamp": "2024-01-01T00:00:00Z"}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("ka.verb=create", "ka.verb=") + "- list: x\n  items: 5\n")
    events = tmp_path / "events.json"
    events.write_text(json.dumps(EVENT) + "\n" + json.dumps({**EVENT, "auditID": "a-2", "verb": "get"}) + "\n")
    return {"good": str(good), "bad": str(bad), "events": str(events), "events2": str(events)}


def test_lint_counts_and_exit_codes(files: dict[str, str]) -> None:
    r = CliRunner().invoke(cli, ["rules", "lint", files["good"]])
    assert r.exit_code == 0, r.output
    assert "1 lists, 1 macros, 1 rules" in r.output
    r = CliRunner().invoke(cli, ["rules", "lint", files["bad"]])
    assert r.exit_code == 1
    assert r.output.count("error:") >= 2 and "bad.yaml:" in r.output  # every error, with file:line:col
    r = CliRunner().invoke(cli, ["rules", "lint", "--json", files["good"]])
    assert json.loads(r.output)["rules"] == 1


def test_test_prints_one_json_line_per_match(files: dict[str, str]) -> None:
    r = CliRunner().invoke(cli, ["rules", "test", "--rules", files["good"], files["good"], "--events",
                                 files["events"], files["events2"], "--json"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 2
    assert {k: lines[0][k] for k in ("rule", "priority", "output", "auditID", "stage", "leaf_index")} == {
        "rule": "eve creates", "priority": "Warning", "output": "eve made pods", "auditID": "a-1",
        "stage": "ResponseComplete", "leaf_index": None}


def test_test_text_and_bad_rules(files: dict[str, str]) -> None:
    r = CliRunner().invoke(cli, ["rules", "test", "--events", files["events"], "--rules", files["good"]])
    assert r.exit_code == 0 and any(line.split()[1:2] == ["Warning"] and line.endswith("eve made pods")
                                    for line in r.stdout.splitlines())  # the -o table format
    r = CliRunner().invoke(cli, ["rules", "test", f"--rules={files['good']}", files["good"], "--events",
                                 files["events"]])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["rules", "test", "--rules", files["bad"], "--events", files["events"]])
    assert r.exit_code == 1
    r = CliRunner().invoke(cli, ["rules", "test", "--rules", files["good"], "--events", "/nonexistent.json"])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_list(files: dict[str, str]) -> None:
    r = CliRunner().invoke(cli, ["rules", "list", "--rules", files["good"], "--json"])
    assert r.exit_code == 0
    assert json.loads(r.stdout.splitlines()[0])["rule"] == "eve creates"


@pytest.mark.skipif(not (FALCO / "rules").is_dir(), reason="Falco fixtures not available")
def test_upstream_rules_lint_clean() -> None:
    for f in sorted((FALCO / "rules").glob("*.yaml")):
        args = [str(FALCO / "rules" / "k8s_audit_rules.yaml"), str(f)] if "gke" in f.name else [str(f)]
        r = CliRunner().invoke(cli, ["rules", "lint", "-q", *args])
        assert r.exit_code == 0, (f, r.output)
