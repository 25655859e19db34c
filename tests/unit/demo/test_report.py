"""The demo's report of later parts, fed with output shaped as their documented JSON contracts."""

from __future__ import annotations

from typing import Any

import pytest

from kubetrail.demo import report
from kubetrail.store.sqlite import Store


def _fake(monkeypatch: pytest.MonkeyPatch, commands: set[str], outputs: dict[str, tuple[int, list[dict[str, Any]]]]
          ) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr(report, "registered_commands", lambda: commands)

    def run_json(args: list[str], data_dir: str, timeout: float = 300) -> tuple[int, list[dict[str, Any]], str]:
        calls.append(args)
        code, docs = outputs[args[0]]
        return code, docs, "boom" if code else ""
    monkeypatch.setattr(report, "run_json", run_json)
    return calls


def test_missing_parts_cost_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(monkeypatch, set(), {})
    lines: list[str] = []
    assert not report.print_alerts("d", lines.append)
    assert not report.print_credentials("d", lines.append)
    assert not report.print_trail("d", lines.append)
    assert len(lines) == 3 and all("not part of this build" in line for line in lines)


def test_alerts_grouped_by_rule_most_severe_first(monkeypatch: pytest.MonkeyPatch) -> None:
    alerts = [{"id": i, "rule": rule, "priority": prio, "subject": "evil-admin", "output": "x", "tags": [],
               "evidence": [{"key": "k", "auditID": "a", "stage": "ResponseComplete", "leaf_index": i}]}
              for i, (rule, prio) in enumerate([("Exec into pod", "NOTICE"), ("system:masters used", "CRITICAL"),
                                               ("Exec into pod", "NOTICE")])]
    _fake(monkeypatch, {"alerts"}, {"alerts": (0, alerts)})
    lines: list[str] = []
    assert report.print_alerts("d", lines.append)
    assert "3 alerts from 2 rules" in lines[0]
    assert "CRITICAL" in lines[1] and "system:masters used" in lines[1]
    assert "2×" in lines[2]


def test_credentials_masters_cert_on_top(monkeypatch: pytest.MonkeyPatch) -> None:
    creds = [
        {"id": "t1", "kind": "token", "subject": "system:serviceaccount:kube-system:ops-automation", "groups": [],
         "created_by": "evil-admin", "jti": "abc", "uses": 9, "source_ips": ["198.51.100.77"],
         "flags": ["cluster-admin-account", "new-ip"]},
        {"id": "c1", "kind": "cert", "subject": "evil-admin", "groups": ["system:masters"], "created_by": "dave",
         "approved_by": "alice", "fingerprint": "f4049f", "uses": 9, "source_ips": ["203.0.113.45"],
         "flags": [{"flag": "system-masters", "why": "…"}]},
        {"id": "c2", "kind": "cert", "subject": "system:node:demo-worker-1", "groups": ["system:nodes"], "uses": 300,
         "flags": []},
    ]
    _fake(monkeypatch, {"creds"}, {"creds": (0, creds)})
    lines: list[str] = []
    assert report.print_credentials("d", lines.append)
    assert lines[0].strip().startswith("3 credentials")
    assert "evil-admin [system:masters]" in lines[1]
    assert "approved by alice" in lines[2] and "flags: system-masters" in lines[3]
    assert "ops-automation" in lines[4]


def test_trail_ok_and_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake(monkeypatch, {"verify"}, {"verify": (0, [{"ok": True, "size": 2537, "root": "ab" * 32}])})
    lines: list[str] = []
    assert report.print_trail("d", lines.append)
    assert "verified: 2537 entries" in lines[0] and calls == [["verify", "--json"]]
    _fake(monkeypatch, {"verify"}, {"verify": (1, [{"ok": False, "first_bad_index": 7, "reason": "modified"}])})
    assert report.print_trail("d", lines.append)
    assert "first bad index 7, reason modified" in lines[1]
    _fake(monkeypatch, {"verify"}, {"verify": (2, [])})
    assert not report.print_trail("d", lines.append)
    assert "boom" in lines[2]


def test_run_json_runs_a_real_command(tmp_path: Any) -> None:
    Store.open(str(tmp_path)).close()
    code, docs, _err = report.run_json(["stats", "--json"], str(tmp_path))
    assert code == 0 and len(docs) == 1 and docs[0]["entries"] == 0
    code, docs, err = report.run_json(["no-such-command"], str(tmp_path))
    assert code != 0 and docs == [] and err


def test_credentials_ranked_by_worst_flag_then_creation(monkeypatch: pytest.MonkeyPatch) -> None:
    def flag(name: str, prio: str) -> dict[str, str]:
        return {"flag": name, "priority": prio, "explanation": "…"}
    creds = [
        {"id": "legacy/x", "kind": "legacy", "subject": "sa", "created_at": "2026-03-14T10:26:00Z",
         "flags": [flag("cluster-admin-sa", "Error"), flag("long-lived", "Warning")]},
        {"id": "adm", "kind": "cert", "subject": "kubernetes-admin", "unaccounted": True,
         "flags": [flag("privileged-group", "Error")]},
        {"id": "jti/1", "kind": "token", "subject": "sa", "created_at": "2026-03-14T10:21:40Z",
         "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system"],
         "flags": [flag("cluster-admin-sa", "Error")]},
        {"id": "old", "kind": "token", "subject": "kube-proxy", "unaccounted": True,
         "flags": [flag("unaccounted", "Notice")]},
    ]
    _fake(monkeypatch, {"creds"}, {"creds": (0, creds)})
    lines: list[str] = []
    report.print_credentials("d", lines.append)
    order = [line.split()[0] for line in lines[1:] if line.startswith("    ") and not line.startswith("     ")]
    assert order == ["token", "legacy", "cert", "…"]
    assert "[system:serviceaccounts" not in lines[1]  # implied groups are not repeated
    assert "1 more, 1 of them in use but never issued" in lines[-1]
