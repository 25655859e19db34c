"""Records stored but never seen by detection (a SIGKILL between the store's commit and the alerts)
are detected on the next start; records ingested with detection off are not gone over later."""

from __future__ import annotations

from pathlib import Path

from kubetrail.alerts.store import list_alerts
from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import Decoded, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.store.sqlite import Store
from kubetrail.testing import make_event

SRC = SourceRef(cluster="t", stream="test")


def exec_event(i: int) -> dict:
    """An exec into a pod: a built-in rule alerts on it."""
    return make_event(f"exec-{i}", verb="create", resource="pods", subresource="exec", name=f"web-{i}",
                      user=f"user-{i}", namespace="shop",
                      requestURI=f"/api/v1/namespaces/shop/pods/web-{i}/exec?command=sh&container=c")


def benign(i: int) -> dict:
    return make_event(f"get-{i}", name=f"p-{i}")


def records(events: list[dict]) -> list:
    return [to_record(Decoded(e, "event", str(i)), SRC) for i, e in enumerate(events)]


def alert_count(data: Path) -> int:
    store = Store.open(str(data), create=False)
    try:
        return len(list_alerts(store))
    finally:
        store.close()


def run_pipeline(data: Path, events: list[dict], detect: bool = True) -> None:
    pipe = open_pipeline(Options(data_dir=str(data), detect=detect))
    try:
        pipe.commit(records(events))
    finally:
        pipe.close()
        pipe.store.close()


def test_records_stored_behind_detections_back_are_detected_on_the_next_start(tmp_path: Path) -> None:
    data = tmp_path / "d"
    run_pipeline(data, [benign(0)])
    baseline = alert_count(data)
    store = Store.open(str(data))  # what a killed process leaves: committed, never detected
    store.append(records([exec_event(1), exec_event(2)]))
    store.close()
    assert alert_count(data) == baseline
    run_pipeline(data, [benign(1)])  # the next start catches up before its own batch
    assert alert_count(data) >= baseline + 2
    again = alert_count(data)
    run_pipeline(data, [benign(2)])  # and never goes over them twice
    assert alert_count(data) == again


def test_a_gap_inside_a_run_is_filled(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "detect.yaml").write_text("allowed_lateness_secs: 0\n")  # released as soon as received
    pipe = open_pipeline(Options(data_dir=str(data), detect=True))
    try:
        pipe.commit(records([benign(0)]))
        before = len(list_alerts(pipe.store))
        pipe.store.append(records([exec_event(3)]))  # another writer stored it; nobody detected it
        pipe.commit(records([benign(1)]))
        assert len(list_alerts(pipe.store)) >= before + 1
    finally:
        pipe.close()
        pipe.store.close()


def test_no_detect_ingest_is_not_gone_over_later(tmp_path: Path) -> None:
    data = tmp_path / "d"
    run_pipeline(data, [exec_event(4), exec_event(5)], detect=False)
    assert alert_count(data) == 0
    run_pipeline(data, [benign(3)])
    assert alert_count(data) == 0
