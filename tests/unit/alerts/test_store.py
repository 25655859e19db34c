"""record_alert: ids, de-duplication, rate limits, evidence, outbox rows per sink."""

from __future__ import annotations

from kubetrail.alerts.alert import Alert, Evidence
from kubetrail.alerts.config import parse_settings
from kubetrail.alerts.store import get_alert, list_alerts, record_alert, record_alerts
from kubetrail.store.testing import execute as sql


def _alert(n: int, subject: str = "alice", audit: str | None = None, t: int | None = None) -> Alert:
    return Alert(rule="R", priority="warning", time=t if t is not None else n * 10**9, subject=subject,
                 output=f"out {n}", tags=["T1609", "k8s"],
                 evidence=[Evidence(key=f"k{n}", audit_id=audit or f"a{n}", stage="ResponseComplete",
                                    leaf_index=n)])


def test_record_and_list(data_dir: str, engine) -> None:
    store = engine.open(data_dir)
    aid = record_alert(store, _alert(1))
    assert aid == 1
    got = get_alert(store, 1)
    assert got is not None and got.priority == "Warning" and got.mitre == ["T1609"]
    assert got.evidence == [Evidence("k1", "a1", "ResponseComplete", 1)]
    j = got.to_json()
    assert {"id", "rule", "priority", "time", "subject", "output", "tags", "evidence"} <= set(j)
    assert j["evidence"][0] == {"key": "k1", "auditID": "a1", "stage": "ResponseComplete", "leaf_index": 1}


def test_same_request_other_stage_is_one_alert(data_dir: str, engine) -> None:
    store = engine.open(data_dir)
    a = _alert(1, audit="same")
    b = _alert(2, audit="same")
    assert record_alerts(store, [a, b]) == [1, None]
    [only] = list_alerts(store)
    assert [e.key for e in only.evidence] == ["k1", "k2"]


def test_rate_limit_folds_into_newest(data_dir: str, engine) -> None:
    store = engine.open(data_dir)
    settings = parse_settings({"rate_limit": {"max_alerts": 3, "window_secs": 60}, "suppress": {"window_secs": 0}})
    ids = record_alerts(store, [_alert(i) for i in range(5)], settings)
    assert ids == [1, 2, 3, None, None]
    assert get_alert(store, 3).suppressed == 2  # type: ignore[union-attr]
    # another subject is not limited; a later window starts again
    assert record_alert(store, _alert(6, subject="bob"), settings) is not None
    assert record_alert(store, _alert(100), settings) is not None


def test_outbox_rows_respect_min_priority(data_dir: str, engine) -> None:
    store = engine.open(data_dir)
    settings = parse_settings({"sinks": [{"name": "all", "type": "stdout"},
                                         {"name": "crit", "type": "stdout", "min_priority": "critical"}]})
    record_alert(store, _alert(1), settings)
    rows = sql(store, "SELECT sink FROM outbox").fetchall()
    assert rows == [("all",)]


def test_since_filter(data_dir: str, engine) -> None:
    store = engine.open(data_dir)
    record_alerts(store, [_alert(1), _alert(5, subject="b")])
    assert [a.subject for a in list_alerts(store, since=2 * 10**9)] == ["b"]
