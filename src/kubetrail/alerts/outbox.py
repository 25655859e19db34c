"""The durable outbox: alert deliveries that survive a down sink, a crash and a restart.

``record_alerts`` writes one ``outbox`` row per (alert, sink) in the same transaction as the alert,
so an alert is never stored without its pending deliveries. ``Outbox.deliver_due`` sends the rows
whose ``next_attempt_ns`` has come, oldest first, and marks each delivered; a failure increments
``attempts`` and pushes ``next_attempt_ns`` back exponentially (``BASE_BACKOFF_SECS`` doubling up to
``MAX_BACKOFF_SECS``). Rows are never dropped: a sink that returns after a day gets everything.

Delivery never runs inside ingestion: ``Deliverer`` is a background thread with its own SQLite
connection (WAL lets it read while the pipeline writes); ingestion only wakes it. A sink that
hangs costs the thread at most its ``timeout_secs`` per attempt.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubetrail.alerts.config import DetectSettings
from kubetrail.alerts.sinks import Sink, build_sink
from kubetrail.alerts.store import get_alert
from kubetrail.errors import KubetrailError

BASE_BACKOFF_SECS = 1.0
MAX_BACKOFF_SECS = 300.0
BATCH_ROWS = 200


def backoff_ns(attempts: int) -> int:
    """Delay before the next try after ``attempts`` failures: 1 s, 2 s, 4 s … capped at 5 min."""
    return int(min(BASE_BACKOFF_SECS * (2 ** max(attempts - 1, 0)), MAX_BACKOFF_SECS) * 1e9)


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    pending: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # sink -> last error


class _Conn:
    """The minimal store face ``get_alert`` needs."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection


class Outbox:
    def __init__(self, connection: sqlite3.Connection, settings: DetectSettings,
                 clock: Callable[[], int] = time.time_ns, sinks: dict[str, Sink] | None = None) -> None:
        self.conn = connection
        self.settings = settings
        self.clock = clock
        self._sinks = sinks if sinks is not None else {}
        self._sink_errors: dict[str, str] = {}

    def sink(self, name: str) -> Sink | None:
        if name not in self._sinks:
            cfg = self.settings.sink(name)
            if cfg is None:
                return None
            self._sinks[name] = build_sink(cfg)
        return self._sinks[name]

    def pending(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM outbox WHERE delivered_ns IS NULL").fetchone()[0])

    def deliver_due(self, max_rows: int = BATCH_ROWS) -> DeliveryReport:
        """Try every due delivery once; a sink that fails is not tried again in this round."""
        now = self.clock()
        report = DeliveryReport()
        rows = self.conn.execute(
            "SELECT id, alert_id, sink, attempts FROM outbox WHERE delivered_ns IS NULL AND next_attempt_ns <= ? "
            "ORDER BY id LIMIT ?", (now, max_rows)).fetchall()
        down: set[str] = set()
        for row_id, alert_id, sink_name, attempts in rows:
            if sink_name in down:
                continue
            sink = self.sink(sink_name)
            alert = get_alert(_Conn(self.conn), alert_id)
            if sink is None or alert is None:
                self._fail(row_id, sink_name, attempts,
                           f"sink {sink_name!r} is not configured" if sink is None else "no alert")
                report.failed += 1
                down.add(sink_name)
                continue
            try:
                sink.send([alert])
            except (KubetrailError, OSError) as exc:
                self._fail(row_id, sink_name, attempts, str(exc))
                report.failed += 1
                report.errors[sink_name] = str(exc)
                down.add(sink_name)
                continue
            self._write("UPDATE outbox SET delivered_ns = ?, attempts = attempts + 1, last_error = '' WHERE id = ?",
                        (self.clock(), row_id))
            report.delivered += 1
        report.pending = self.pending()
        return report

    def _fail(self, row_id: int, sink: str, attempts: int, error: str) -> None:
        """Back off the whole sink: its other pending rows wait as long as the one that failed."""
        n = attempts + 1
        retry_at = self.clock() + backoff_ns(n)
        self._write("UPDATE outbox SET attempts = ?, next_attempt_ns = ?, last_error = ? WHERE id = ?",
                    (n, retry_at, error[:500], row_id))
        self._write("UPDATE outbox SET next_attempt_ns = MAX(next_attempt_ns, ?) WHERE sink = ? AND delivered_ns IS NULL",
                    (retry_at, sink))

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        self.conn.execute(sql, params)  # autocommit: one row at a time, the pipeline may hold the writer

    def retry_now(self) -> int:
        """Make every pending delivery due now (``kubetrail alerts deliver --now``)."""
        cur = self.conn.execute("UPDATE outbox SET next_attempt_ns = 0 WHERE delivered_ns IS NULL")
        return cur.rowcount

    def status(self) -> list[tuple[str, int, int, str]]:
        """Per sink: (name, delivered, pending, last error)."""
        return [(s, int(d or 0), int(p or 0), e or "") for s, d, p, e in self.conn.execute(
            "SELECT sink, SUM(delivered_ns IS NOT NULL), SUM(delivered_ns IS NULL), "
            "MAX(CASE WHEN delivered_ns IS NULL THEN last_error END) FROM outbox GROUP BY sink ORDER BY sink")]


def open_connection(data_dir: str) -> sqlite3.Connection:
    """A second connection to the store's database for the delivery thread."""
    from kubetrail.store.sqlite import DB_NAME

    conn = sqlite3.connect(os.path.join(data_dir, DB_NAME), isolation_level=None, check_same_thread=False,
                           timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


class Deliverer:
    """Background delivery: wakes when alerts are recorded and every ``poll_secs``."""

    def __init__(self, data_dir: str, settings: DetectSettings, poll_secs: float = 1.0) -> None:
        self.outbox = Outbox(open_connection(data_dir), settings)
        self.poll_secs = poll_secs
        self.last = DeliveryReport()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kubetrail-alert-delivery", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_secs)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.last = self.outbox.deliver_due()
            except sqlite3.Error as exc:  # database busy: try again next round
                self.last = DeliveryReport(errors={"store": str(exc)})

    def close(self, flush_secs: float = 5.0) -> DeliveryReport:
        """Stop; first give due deliveries up to ``flush_secs`` (what remains stays in the outbox)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=max(flush_secs, 0.1) + 30)
        deadline = time.monotonic() + flush_secs
        report = DeliveryReport()
        while time.monotonic() < deadline:
            r = self.outbox.deliver_due()
            report.delivered += r.delivered
            report.failed += r.failed
            report.errors.update(r.errors)
            report.pending = r.pending
            if r.delivered == 0:
                break
        self.outbox.conn.close()
        return report
