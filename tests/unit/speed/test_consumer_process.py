"""Detection and the credential inventory in their own process (``kubetrail.consumer_process``),
as the pipeline runs them with preparation workers: the same alerts and inventory as in the writer,
and a failure of that process is raised in the writer while nothing stored is lost."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from kubetrail import telemetry
from kubetrail.consumer_process import ConsumerProcess, ConsumerProcessError
from kubetrail.demo.scenario import generate
from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import Decoded, SourceRef
from kubetrail.stages.redaction_key import KEY_FILE, load_or_create
from kubetrail.store import open_store
from kubetrail.store.testing import execute as sql
from kubetrail.trail.checkpointer import Checkpointer

SRC = SourceRef(stream="file:demo")


def _items(n: int = 600) -> list[Decoded]:
    return [Decoded(e, "event", f"demo:{i + 1}") for i, e in enumerate(generate(events=n).events)]


def _state(data: Path) -> dict[str, Any]:
    with open_store(str(data), readonly=True) as s:
        return {
            "size": s.size(),
            "alerts": sorted(tuple(r) for r in sql(s, "SELECT rule, subject, priority, output, time, last_seen, "
                                                      "occurrences, occurrence, fields_json FROM alerts")),
            "creds": list(sql(s, "SELECT id, kind, credential_id, subject, doc FROM credentials ORDER BY id")),
            "uses": list(sql(s, "SELECT u.credential, u.request, e.key, u.link FROM credential_uses u "
                               "JOIN entries e ON e.leaf_index = u.leaf_index ORDER BY 1, 2")),
            "flags": list(sql(s, "SELECT credential, flag, key FROM credential_flags ORDER BY 1, 2")),
            "events": sorted(tuple(r) for r in sql(s, "SELECT a.rule, a.subject, e.key, e.occurrence, e.leaf_index "
                                                      "FROM alert_events e JOIN alerts a ON a.id = e.alert_id")),
        }


def _run(data: Path, key: Path, workers: int, items: list[Decoded], batch: int = 100) -> Any:
    data.mkdir()
    (data / KEY_FILE).write_bytes(key.read_bytes())
    pipe = open_pipeline(Options(data_dir=str(data), workers=workers, apart=True), batch_size=batch)
    try:
        pipe.ingest_items(items, SRC)
    finally:
        pipe.close()
        pipe.store.close()
    return pipe


def test_consumers_in_their_own_process_decide_what_the_writer_would(tmp_path: Path) -> None:
    key = tmp_path / "redaction.key"
    load_or_create(str(key))
    items = _items()
    raised: list[list[tuple[str, str]]] = []
    pipes = {}
    for name, workers in (("one", 0), ("two", 1)):
        seen: list[tuple[str, str]] = []
        stop = telemetry.listen(lambda e, seen=seen: seen.append((e.rule, e.subject))
                                if isinstance(e, telemetry.DetectAlertRaised) else None)
        try:
            pipes[name] = _run(tmp_path / name, key, workers, items)
        finally:
            stop()
        raised.append(sorted(seen))
    one, two = pipes["one"], pipes["two"]
    # alerts raised in the consumers' process are emitted in the writer too (its /metrics in `run`)
    assert raised[0] and raised[0] == raised[1]
    assert [type(c).__name__ for c in one.consumers] == ["Checkpointer", "DetectConsumer", "CredentialConsumer"]
    assert [type(c) for c in two.consumers] == [Checkpointer, ConsumerProcess]  # the writer runs neither
    a, b = _state(tmp_path / "one"), _state(tmp_path / "two")
    assert a["size"] == len(items) and len(a["alerts"]) > 5 and a["creds"] and a["uses"] and a["flags"]
    for part in a:
        assert a[part] == b[part], part


def test_a_failed_consumer_process_is_raised_and_the_next_run_catches_up(tmp_path: Path) -> None:
    key = tmp_path / "redaction.key"
    load_or_create(str(key))
    items = _items()
    _run(tmp_path / "one", key, 0, items)
    data = tmp_path / "two"
    data.mkdir()
    (data / KEY_FILE).write_bytes(key.read_bytes())
    pipe = open_pipeline(Options(data_dir=str(data), workers=1, apart=True), batch_size=100)
    assert pipe.apart is not None
    pipe.ingest_items(items[:100], SRC)
    os.kill(pipe.apart._proc.pid, signal.SIGKILL)
    pipe.apart._proc.join()
    with pytest.raises(ConsumerProcessError, match="detection/credentials process"):
        pipe.ingest_items(items[100:], SRC)
    pipe.close()  # said once, above; closing still signs the checkpoint and stops the workers
    pipe.store.close()
    with open_store(str(data), readonly=True) as s:
        assert s.size() == 200  # the batch whose consumers failed is stored: nothing is lost
    # the next run (one process) detects what the dead process did not, then the rest
    pipe = open_pipeline(Options(data_dir=str(data), workers=0), batch_size=100)
    pipe.ingest_items(items, SRC)
    pipe.close()
    pipe.store.close()
    assert _state(tmp_path / "one")["alerts"] == _state(data)["alerts"]


def test_a_process_killed_with_a_batch_unread_is_a_consumer_error(tmp_path: Path) -> None:
    """Killed while our batch sits unread in its pipe, the process leaves a reset pipe (ECONNRESET
    on our read, not EOF): still the one clear error, never a bare ConnectionResetError. The
    process is stopped first so that the batch is certainly unread when it dies."""
    data = tmp_path / "d"
    pipe = open_pipeline(Options(data_dir=str(data), workers=1, apart=True), batch_size=100)
    assert pipe.apart is not None
    items = _items(300)[:300]
    handled: list[telemetry.Event] = []
    stop = telemetry.listen(lambda e: handled.append(e) if isinstance(e, telemetry.DetectLagMeasured) else None)
    try:
        pipe.ingest_items(items[:100], SRC)
        deadline = time.monotonic() + 60
        while not handled and time.monotonic() < deadline:  # its events come once it handled the batch
            time.sleep(0.02)
    finally:
        stop()
    assert handled, "the consumer process's telemetry never reached the writer"
    os.kill(pipe.apart._proc.pid, signal.SIGSTOP)  # idle: the next batch stays unread in the pipe
    pipe.ingest_items(items[100:200], SRC)  # sent, never read
    os.kill(pipe.apart._proc.pid, signal.SIGKILL)
    pipe.apart._proc.join()
    with pytest.raises(ConsumerProcessError, match="detection/credentials process"):
        pipe.ingest_items(items[200:], SRC)
    pipe.close()
    pipe.store.close()
    with open_store(str(data), readonly=True) as s:
        assert s.size() == len(items)  # every batch stored: nothing is lost
