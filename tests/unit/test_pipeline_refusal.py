"""When the checkpointer refuses to sign (its checkpoints were deleted), the batch is still stored,
detection and the credential inventory still see it, `ingest` says why, and `run` keeps going."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from kubetrail.alerts.store import list_alerts
from kubetrail.config import Config
from kubetrail.errors import TrailError
from kubetrail.pipeline import Options, open_pipeline, run_live
from kubetrail.record import Decoded, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.testing import make_event


def rec(e: dict):
    return to_record(Decoded(e, "event", "t"), SourceRef(stream="t"))


def signed_then_checkpoints_deleted(data: Path) -> None:
    pipe = open_pipeline(Options(data_dir=str(data), detect=True))
    pipe.commit([rec(make_event("first"))])
    pipe.close()
    pipe.store.close()
    conn = sqlite3.connect(data / "kubetrail.db")
    conn.execute("DELETE FROM trail_checkpoints")
    conn.commit()
    conn.close()


def test_refusal_does_not_stop_the_other_consumers(tmp_path: Path) -> None:
    data = tmp_path / "d"
    signed_then_checkpoints_deleted(data)
    pipe = open_pipeline(Options(data_dir=str(data), detect=True))
    try:
        exec_event = make_event("x", verb="create", resource="pods", subresource="exec", name="web", user="eve",
                                requestURI="/api/v1/namespaces/default/pods/web/exec?command=sh")
        with pytest.raises(TrailError, match="refusing to sign"):
            pipe.commit([rec(exec_event)])
        assert pipe.store.size() == 2  # stored all the same
        assert any(a.subject == "eve" for a in list_alerts(pipe.store))  # detection ran after the refusal
    finally:
        pipe.close()
        pipe.store.close()


def test_run_logs_the_refusal_every_tick_and_exits_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "d"
    signed_then_checkpoints_deleted(data)
    stop = threading.Event()
    lines: list[str] = []

    def log(line: str) -> None:  # stop after the second refusal: a wall-clock budget flakes under load
        lines.append(line)
        if sum("refusing to sign" in x for x in lines) >= 2:
            stop.set()

    deadline = threading.Timer(60, stop.set)
    deadline.start()
    try:
        run_live(Config(data_dir=str(data), checkpoint_interval_secs=0.1), stop, log=log)
    finally:
        deadline.cancel()
    assert sum("refusing to sign" in line for line in lines) >= 2
