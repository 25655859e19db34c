"""Issue 15: `kubetrail detect` over a store that was already detected changes nothing — no alert, no
occurrence, no delivery is added, and its summary says so (it used to report every match as "folded
into existing alerts" on each run) — and the demo's pod tokens raise no JTI collision."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from kubetrail.alerts.store import alert_events, list_alerts
from kubetrail.cli import cli
from kubetrail.credentials.report import list_credentials
from kubetrail.demo.scenario import generate
from kubetrail.store import open_store


def _state(data: Path) -> list[tuple[object, ...]]:
    store = open_store(str(data), create=False)
    try:
        return [(a.id, a.rule, a.subject, a.count, a.time, a.last_seen, a.output,
                 [(e.occurrence, e.evidence.key) for e in alert_events(store, a.id or 0)])
                for a in list_alerts(store)]
    finally:
        store.close()


def test_detecting_again_is_a_no_op_and_says_so(tmp_path: Path) -> None:
    data, log, sent = tmp_path / "d", tmp_path / "audit.log", tmp_path / "sent.jsonl"
    data.mkdir()
    (data / "detect.yaml").write_text(f"sinks: [{{name: file, type: jsonl, path: {sent}}}]\n")
    log.write_bytes(generate(events=2000).lines())
    run = CliRunner().invoke
    assert run(cli, ["ingest", str(log), "--data", str(data)]).exit_code == 0
    before, delivered = _state(data), sent.read_text().count("\n")
    assert len(before) > 20 and any(count > 1 for _, _, _, count, *_ in before)  # some are aggregated
    assert delivered == len(before)  # one delivery per alert, not per occurrence
    for _ in range(2):
        r = run(cli, ["detect", "--data", str(data)])
        assert r.exit_code == 0, r.output
        assert ", 0 new alerts, 0 new occurrences folded into existing alerts, " in r.stderr, r.stderr
        assert _state(data) == before
        assert sent.read_text().count("\n") == delivered

    store = open_store(str(data), create=False)
    try:
        assert not [a for a in list_alerts(store) if "jti-collision" in a.rule]
        creds = list_credentials(store)
        assert not [c["id"] for c in creds if "jti-collision" in str(c.get("flags"))]
        pods = [c for c in creds if str(c.get("subject", "")).startswith("system:serviceaccount:kube-system:kube-proxy")]
        assert pods, "the demo's kube-proxy pod tokens are in the inventory"
    finally:
        store.close()
