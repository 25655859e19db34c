"""The durable outbox: alert deliveries that survive a down sink, a crash and a restart.

``record_alerts`` writes one ``outbox`` row per (alert, sink) in the same transaction as the alert,
so an alert is never stored without its pending deliveries. ``Outbox.deliver_due`` sends the rows
whose ``next_attempt_ns`` has come, oldest first, and marks each delivered; a failure increments
``attempts`` and pushes ``next_attempt_ns`` back exponentially (``BASE_BACKOFF_SECS`` doubling up to
``MAX_BACKOFF_SECS``). Rows are never dropped: a sink that returns after a day gets everything.

Delivery never runs inside ingestion: ``Deliverer`` is a background thread with its own handle on
the store (``store.reopen()``: on SQLite its own connection, WAL lets it read while the pipeline
writes); ingestion only wakes it. A sink that
hangs costs the thread at most its ``timeout_secs`` per attempt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from kubetrail import telemetry
from kubetrail.alerts.config import DetectSettings
from kubetrail.alerts.sinks import Sink, build_sink
from kubetrail.alerts.store import get_alert
from kubetrail.errors import KubetrailError
from kubetrail.store import engine_errors
from kubetrail.store.api import AlertsRepo, OutboxRepo, Store

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


class OutboxStore(Protocol):
    @property
    def alerts(self) -> AlertsRepo: ...

    @property
    def outbox(self) -> OutboxRepo: ...


class Outbox:
    """Writes are single statements outside any transaction: the pipeline may hold the writer."""

    def __init__(self, store: OutboxStore, settings: DetectSettings,
                 clock: Callable[[], int] = time.time_ns, sinks: dict[str, Sink] | None = None) -> None:
        self.store = store
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
        return self.store.outbox.pending()

    def deliver_due(self, max_rows: int = BATCH_ROWS) -> DeliveryReport:
        """Try every due delivery once; a sink that fails is not tried again in this round."""
        now = self.clock()
        report = DeliveryReport()
        rows = self.store.outbox.due(now, max_rows)
        down: set[str] = set()
        for row_id, alert_id, sink_name, attempts in rows:
            if sink_name in down:
                continue
            sink = self.sink(sink_name)
            alert = get_alert(self.store, alert_id)
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
            self.store.outbox.delivered(row_id, self.clock())
            telemetry.emit(telemetry.AlertSinkDelivered(sink_name))
            report.delivered += 1
        report.pending = self.pending()
        telemetry.emit(telemetry.AlertOutboxMeasured(report.pending))
        return report

    def _fail(self, row_id: int, sink: str, attempts: int, error: str) -> None:
        """Back off the whole sink: its other pending rows wait as long as the one that failed."""
        telemetry.emit(telemetry.AlertSinkSendError(sink, error[:200]))
        n = attempts + 1
        retry_at = self.clock() + backoff_ns(n)
        self.store.outbox.failed(row_id, n, retry_at, error[:500])
        self.store.outbox.hold_sink(sink, retry_at)

    def retry_now(self) -> int:
        """Make every pending delivery due now (``kubetrail alerts deliver --now``)."""
        return self.store.outbox.retry_now()

    def status(self) -> list[tuple[str, int, int, str]]:
        """Per sink: (name, delivered, pending, last error)."""
        return self.store.outbox.status()


class Deliverer:
    """Background delivery: wakes when alerts are recorded and every ``poll_secs``."""

    def __init__(self, store: Store, settings: DetectSettings, poll_secs: float = 1.0) -> None:
        self._store = store.reopen()
        self.outbox = Outbox(self._store, settings)
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
            except engine_errors() as exc:  # database busy: try again next round
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
        self._store.close()
        return report
