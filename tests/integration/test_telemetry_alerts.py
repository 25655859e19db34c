"""Alerts, sink deliveries and checkpoints report themselves as telemetry events and metrics."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kubetrail import telemetry
from kubetrail.alerts.alert import Alert, Evidence
from kubetrail.alerts.config import parse_settings
from kubetrail.alerts.outbox import Outbox
from kubetrail.alerts.store import record_alert
from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import Decoded, SourceRef
from kubetrail.store import open_store
from kubetrail.testing import capture_events, make_event

from .test_alert_sinks import Receiver, _free_port

pytestmark = pytest.mark.integration


def _alert(n: int) -> Alert:
    return Alert(rule="Exec or Attach Into Pod", priority="Notice", time=1_700_000_000_000_000_000 + n,
                 subject=f"user-{n}", output=f"exec #{n}",
                 evidence=[Evidence(key=f"k{n}", audit_id=f"a{n}", stage="ResponseStarted", leaf_index=n)])


def _value(name: str) -> float:
    text = telemetry.render()[0].decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.split("{")[0].split(" ")[0] == name)


def test_alerts_deliveries_failures_and_outbox_depth(data_dir: str) -> None:
    """3 alerts raised; a down sink: 1 error (the sink backs off), outbox 3; sink back: 3 delivered, outbox 0."""
    port = _free_port()
    settings = parse_settings({"sinks": [{"name": "hook", "type": "webhook", "url": f"http://127.0.0.1:{port}/",
                                          "timeout_secs": 2}]})
    store = open_store(data_dir)
    now = [time.time_ns() + 10**9]
    box = Outbox(store, settings, clock=lambda: now[0])
    errors_before = _value("kubetrail_alert_sink_errors_total")
    with capture_events() as seen:
        for n in range(3):
            record_alert(store, _alert(n), settings)
        box.deliver_due()
    raised = [e for e in seen if isinstance(e, telemetry.DetectAlertRaised)]
    assert [(e.rule, e.priority) for e in raised] == [("Exec or Attach Into Pod", "Notice")] * 3
    assert [e.sink for e in seen if isinstance(e, telemetry.AlertSinkSendError)] == ["hook"]
    assert _value("kubetrail_alert_sink_errors_total") - errors_before == 1
    assert _value("kubetrail_alert_outbox_alerts") == 3
    receiver = Receiver(port=port)
    try:
        now[0] += 3_600 * 10**9
        with capture_events() as seen:
            box.deliver_due()
        assert [e.sink for e in seen if isinstance(e, telemetry.AlertSinkDelivered)] == ["hook"] * 3
        assert _value("kubetrail_alert_outbox_alerts") == 0
    finally:
        receiver.close()
        store.close()


def test_each_commit_signs_a_checkpoint_that_sets_the_age(tmp_path: Path) -> None:
    pipe = open_pipeline(Options(data_dir=str(tmp_path / "data"), detect=False))
    try:
        with capture_events() as seen:
            pipe.ingest_items([Decoded(make_event(f"00000000-0000-0000-0000-00000000010{i}"), "json", f"p:{i}")
                               for i in range(4)], SourceRef(stream="file:x"))
    finally:
        pipe.close()
        pipe.store.close()
    [signed] = [e for e in seen if isinstance(e, telemetry.TrailCheckpointSigned)]
    assert signed.size == 4 and abs(signed.timestamp - time.time()) < 60
    assert _value("kubetrail_trail_checkpoint_size_leaves") == 4
    assert 0 <= _value("kubetrail_trail_checkpoint_age_seconds") < 60


def test_detection_reports_its_lag_and_what_it_holds(tmp_path: Path) -> None:
    """Records an hour old: detection's event time is about an hour behind; the reorder buffer holds
    the records still inside the allowed lateness."""
    hour_ago = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 3600))
    pipe = open_pipeline(Options(data_dir=str(tmp_path / "data"), detect=True))
    with capture_events() as seen:
        try:
            pipe.ingest_items([Decoded(make_event(f"00000000-0000-0000-0000-00000000020{i}", time=hour_ago), "json",
                                       f"p:{i}") for i in range(3)], SourceRef(stream="file:x"))
        finally:
            pipe.close()  # the end of an ingest releases what the reorder buffer held
            pipe.store.close()
    lags = [e for e in seen if isinstance(e, telemetry.DetectLagMeasured)]
    assert lags[0].pending_records == 3 and lags[-1].pending_records == 0
    released = [e for e in lags if e.lag_seconds > 0]
    assert released and all(3000 < e.lag_seconds < 4000 for e in released), lags
