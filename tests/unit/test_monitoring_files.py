"""deploy/monitoring: the Grafana dashboard and the Prometheus rules parse, use only metrics that
kubetrail exposes, and pass `promtool check rules` (Debian's prometheus package)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kubetrail.telemetry import METRICS

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
METRIC = re.compile(r"\bkubetrail_[a-z_]+\b")
REQUIRED_ALERTS = {"KubetrailAuditSilence", "KubetrailSeqGap", "KubetrailCheckpointTooOld", "KubetrailAlertSinkFailing"}


def exposed() -> set[str]:
    names = set()
    for m in METRICS:
        names.add(m.name)
        if m.type == "histogram":
            names |= {f"{m.name}_bucket", f"{m.name}_count", f"{m.name}_sum"}
    return names


def rules() -> list[dict[str, str]]:
    doc = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_rules_cover_silence_gaps_checkpoints_and_sinks_with_known_metrics() -> None:
    found = rules()
    assert {r["alert"] for r in found} >= REQUIRED_ALERTS
    for r in found:
        used = set(METRIC.findall(r["expr"]))
        assert used and used <= exposed(), (r["alert"], used - exposed())
        assert r["labels"]["severity"] in ("critical", "warning") and r["annotations"]["summary"]


def test_dashboard_is_valid_json_using_known_metrics() -> None:
    dash = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert dash["uid"] and dash["panels"]
    used: set[str] = set()
    for panel in dash["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(METRIC.findall(target["expr"]))
            assert names, target
            used |= names
    assert used <= exposed(), used - exposed()
    for must in ("kubetrail_source_records_total", "kubetrail_source_last_record_timestamp_seconds",
                 "kubetrail_trail_checkpoint_age_seconds", "kubetrail_alert_sink_errors_total",
                 "kubetrail_buffer_size_bytes", "kubetrail_broker_lag_records", "kubetrail_source_seq_gaps_total"):
        assert must in used, must
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_promtool_checks_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    proc = subprocess.run([promtool, "check", "rules", str(MONITORING / "prometheus-rules.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules())} rules found" in proc.stdout
