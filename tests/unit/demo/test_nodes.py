"""The demo's node-agent part: the app followed across its reschedule, the attacker's shell output next
to the exec in the audit log, the printed CA key never stored, and a second run storing nothing."""

from __future__ import annotations

from pathlib import Path

from kubetrail.cli.demo import ingest_demo
from kubetrail.demo.nodes import node_lines, report, run_node_agent
from kubetrail.demo.scenario import MIN_EVENTS, generate
from kubetrail.store import LogFilters


def test_node_agent_part(tmp_path: Path) -> None:
    """Both nodes under one workload; exec time precedes the shell's lines; key lines redacted; idempotent."""
    data = str(tmp_path / "d")
    ingest_demo(data, generate(seed=7, events=MIN_EVENTS))
    facts = run_node_agent(data, seed=7)
    assert facts.stored == facts.lines > 50 and facts.exec_times
    app = node_lines(data, LogFilters(workload=["deployment/shop/payments"]))
    assert {r.log().node for r in app} == {"demo-worker-1", "demo-worker-2"}
    assert [r.time for r in app] == sorted(r.time for r in app)
    shell = node_lines(data, LogFilters(pod=[facts.debugger_pod], namespace=["kube-system"]))
    assert shell and shell[0].time > facts.exec_times[0] and shell[0].log().workload == f"pod/kube-system/{facts.debugger_pod}"
    raw = b"".join(p.read_bytes() for p in Path(data).glob("kubetrail.db*"))
    bodies = b"".join(r.body for r in node_lines(data, LogFilters()))  # stored compressed: look decompressed too
    assert not any(k.encode() in raw or k.encode() in bodies for k in facts.key_lines)
    again = run_node_agent(data, seed=7)
    assert again.stored == facts.stored
    assert any("redacted before anything was stored" in line for line in report(data, facts))
