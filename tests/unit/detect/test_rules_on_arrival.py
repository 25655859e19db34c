"""Rule alerts are stored and queued for delivery when the record arrives, never behind the watermark
(lead decision on issue 15); aggregation makes what is stored the same whatever the arrival order."""

from __future__ import annotations

from pathlib import Path

import orjson

from kubetrail.alerts.store import list_alerts
from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import Decoded, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.store.testing import execute as sql
from kubetrail.testing import make_event

SRC = SourceRef(cluster="t", stream="audit-webhook:apiserver-1")


def ts(sec: int) -> str:
    return f"2024-05-01T10:{sec // 60:02d}:{sec % 60:02d}.000000Z"


def exec_event(i: int, sec: int) -> dict:
    return make_event(f"exec-{i}", verb="create", resource="pods", subresource="exec", name="web", namespace="shop",
                      user="mallory", time=ts(sec), requestURI=f"/api/v1/namespaces/shop/pods/web/exec?command=sh{i}")


def test_a_rule_alert_is_stored_and_queued_at_once_then_aggregates(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "detect.yaml").write_text(orjson.dumps({
        "allowed_lateness_secs": 300, "sinks": [{"name": "file", "type": "jsonl", "path": str(tmp_path / "a.jsonl")}],
    }).decode())
    pipe = open_pipeline(Options(data_dir=str(data), live=True))
    try:
        pipe.commit([to_record(Decoded(exec_event(1, 100), "event", "a"), SRC)])
        [alert] = list_alerts(pipe.store)  # no watermark to wait for: 300 s of lateness, still there
        assert alert.rule == "Exec or Attach Into Pod" and alert.count == 1
        assert sql(pipe.store, "SELECT COUNT(*) FROM outbox").fetchone()[0] == 1
        pipe.commit([to_record(Decoded(exec_event(2, 40), "event", "b"), SRC)])  # earlier, arrived later
        [alert] = list_alerts(pipe.store)
        assert alert.count == 2 and alert.output.endswith(")") and "sh2" in str(alert.fields)
        assert alert.time < alert.last_seen  # the earliest occurrence describes the alert
        assert sql(pipe.store, "SELECT COUNT(*) FROM outbox").fetchone()[0] == 1  # one delivery per alert
    finally:
        pipe.close()
        pipe.store.close()
