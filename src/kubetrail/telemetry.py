"""Named internal events: each one is one structured log line and a Prometheus metric change.

Code never calls ``logger.info`` or ``counter.inc()`` for its own health: it calls
``emit(SourceRecordsReceived(source="node-a/audit-file:/var/log/audit.log", kind="audit", count=3))``.
``METRICS`` is the one table of every metric kubetrail exposes (docs/reference/metrics.md is
generated from it and checked by a test); each event class says, in ``apply``, which of them it
moves. Events are named ``<Namespace><Noun><Verb>[Error]`` in the past tense and metrics
``kubetrail_<namespace>_<name>_<unit>[_total]`` (STYLE.md §3.4, §3.10.10).

How to add one: a row in ``METRICS`` (if a new metric is needed), a frozen dataclass below with
``apply``, a line in docs/reference/metrics.md (``make docs`` rewrites it), and a test that emits it.

The log line goes to the ``kubetrail.events`` logger as a JSON object with an ``event`` key
(``{"event": "TrailCheckpointSigned", "size": 1200, ...}``); the event object itself is attached
as ``record.event`` for handlers. High-volume events log at DEBUG, errors at WARNING or above.

Exposition is ``prometheus_client``'s (``render(accept)``), from one registry per process: the
same registry is served by ``kubetrail serve``, by ``run``/``agent``/``collector`` on
``telemetry.listen_address`` and by the audit webhook's ``/metrics``.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import orjson

__all__ = ["METRICS", "AlertOutboxMeasured", "AlertSinkDelivered", "AlertSinkSendError", "BrokerLagMeasured",
           "BufferRecordsDropped", "BufferSizeMeasured", "DetectAlertRaised", "DetectLagMeasured", "Event",
           "MetricSpec", "RedactValuesRemoved", "SourceRecordsReceived", "SourceRecordsRejected",
           "SourceSeqGapDetected", "StoreBatchCommitted", "StoreDuplicatesSkipped", "StoreRecordsWritten",
           "TrailCheckpointSigned", "TrailSizeMeasured", "WebRequestServed", "WebhookConnectionRefused",
           "WebhookRefusal",
           "WebhookEventsAccepted", "WebhookHandshakeError", "WebhookResponseSent", "emit", "listen",
           "emit_commit", "events", "metric", "reference_markdown", "render"]

if TYPE_CHECKING:  # prometheus_client is imported when the registry is built (see _PENDING): commands start faster
    from prometheus_client import Counter, Gauge, Histogram
    from prometheus_client.core import Metric

    from kubetrail.record import Record

log = logging.getLogger("kubetrail.events")

MetricType = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    name: str  # the exposed name (counters with their _total)
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()


# The whole table, in the order docs/reference/metrics.md lists it.
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("kubetrail_source_records_total", "counter",
               "Records read from a source and handed to the store (before de-duplication).", ("source", "kind")),
    MetricSpec("kubetrail_source_records_rejected_total", "counter",
               "Input items that could not become records (see rejects.jsonl); kind is the kind of the "
               "records of the same batch, `unknown` when the batch had none.", ("source", "kind")),
    MetricSpec("kubetrail_source_last_record_timestamp_seconds", "gauge",
               "Wall-clock time a source last delivered a record (audit silence: time() minus this).",
               ("source", "kind")),
    MetricSpec("kubetrail_source_seq_gaps_total", "counter",
               "Gaps in a sealed source's sequence numbers seen by the collector.", ("source",)),
    MetricSpec("kubetrail_source_records_lost_total", "counter",
               "Records missing in those gaps (or declared lost by a loss marker).", ("source",)),
    MetricSpec("kubetrail_store_records_total", "counter",
               "Records committed as new trail leaves.", ("source", "kind")),
    MetricSpec("kubetrail_store_duplicates_total", "counter",
               "Records the store already held (redelivery), not stored again.", ("source", "kind")),
    MetricSpec("kubetrail_store_commit_duration_seconds", "histogram",
               "Time to commit one batch to the store (append, positions, one transaction)."),
    MetricSpec("kubetrail_redact_values_total", "counter",
               "Values removed by redaction before anything was written, by what they were.", ("kind", "what")),
    MetricSpec("kubetrail_trail_size_leaves", "gauge", "Leaves in the trail (the next leaf index)."),
    MetricSpec("kubetrail_trail_checkpoint_size_leaves", "gauge", "Tree size of the last signed checkpoint."),
    MetricSpec("kubetrail_trail_checkpoint_timestamp_seconds", "gauge",
               "Wall-clock time the last checkpoint was signed."),
    MetricSpec("kubetrail_trail_checkpoint_age_seconds", "gauge",
               "Seconds since the last checkpoint was signed (absent until one is)."),
    MetricSpec("kubetrail_detect_alerts_total", "counter", "Alerts raised, per rule and priority.",
               ("rule", "priority")),
    MetricSpec("kubetrail_detect_lag_seconds", "gauge",
               "How far detection's event time (its watermark) is behind the wall clock."),
    MetricSpec("kubetrail_detect_pending_records", "gauge",
               "Stored records detection has not evaluated yet (reorder buffer, catch-up)."),
    MetricSpec("kubetrail_alert_sink_deliveries_total", "counter", "Alerts delivered, per sink.", ("sink",)),
    MetricSpec("kubetrail_alert_sink_errors_total", "counter", "Failed alert deliveries, per sink.", ("sink",)),
    MetricSpec("kubetrail_alert_outbox_alerts", "gauge", "Alert deliveries waiting in the outbox."),
    MetricSpec("kubetrail_buffer_size_bytes", "gauge", "Bytes in the agent's disk WAL."),
    MetricSpec("kubetrail_buffer_records_dropped_total", "counter",
               "Records the WAL dropped (when_full: drop_oldest, quarantined corruption), per reason.",
               ("reason",)),
    MetricSpec("kubetrail_broker_lag_records", "gauge",
               "Messages in the broker not yet acknowledged by this collector.", ("stream",)),
    MetricSpec("kubetrail_webhook_events_total", "counter",
               "Audit events stored (or already stored: redelivery) from accepted webhook batches."),
    MetricSpec("kubetrail_webhook_rejected_total", "counter",
               "Items of accepted webhook batches that were not audit events (see rejects.jsonl)."),
    MetricSpec("kubetrail_webhook_responses_total", "counter", "Webhook HTTP answers by status code.", ("code",)),
    MetricSpec("kubetrail_webhook_tls_failed_total", "counter",
               "TLS handshakes that failed (no or wrong client certificate, bad TLS)."),
    MetricSpec("kubetrail_webhook_connections_refused_total", "counter",
               "Webhook connections closed at once because max_connections were open."),
    MetricSpec("kubetrail_webhook_header_timeouts_total", "counter",
               "Unauthenticated webhook connections cut at header_timeout_secs."),
    MetricSpec("kubetrail_webhook_unauthenticated_evicted_total", "counter",
               "Unauthenticated webhook connections closed to make room for new ones."),
    MetricSpec("kubetrail_webhook_client_limit_refused_total", "counter",
               "Webhook connections refused because their client held max_connections_per_client."),
    MetricSpec("kubetrail_web_requests_total", "counter", "Dashboard/API answers by route and status code.",
               ("route", "code")),
)

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Metrics:
    """The prometheus_client objects of ``METRICS`` in one registry (built on first use)."""

    def __init__(self) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            PlatformCollector,
            ProcessCollector,
            disable_created_metrics,
        )

        disable_created_metrics()  # no *_created series: they double the exposition for no use here
        self.registry = CollectorRegistry()
        self.by_name: dict[str, Counter | Gauge | Histogram] = {}
        self.checkpoint_time: float | None = None
        for spec in METRICS:
            if spec.name == AGE:
                continue  # computed at scrape time by checkpoint_age
            cls = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[spec.type]
            extra = {"buckets": _BUCKETS} if spec.type == "histogram" else {}
            self.by_name[spec.name] = cls(spec.name, spec.help, spec.labels, registry=self.registry, **extra)
        self.registry.register(_checkpoint_age(self))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)


AGE = "kubetrail_trail_checkpoint_age_seconds"


def _checkpoint_age(metrics: _Metrics) -> Any:
    """A collector for the age of the last checkpoint, measured at scrape time (absent before one)."""
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector

    class CheckpointAge(Collector):
        def collect(self) -> Iterator[Metric]:
            spec = next(s for s in METRICS if s.name == AGE)
            family = GaugeMetricFamily(spec.name, spec.help)
            if metrics.checkpoint_time is not None:
                family.add_metric([], max(0.0, time.time() - metrics.checkpoint_time))
            yield family

    return CheckpointAge()


_METRICS: list[_Metrics] = []
_METRICS_LOCK = threading.Lock()

# Metric changes made before the registry exists wait here, as (name, labels, method, value), and are
# replayed in order when it is built: by the first ``render`` or ``metric``, or once _PENDING_MAX of
# them wait. prometheus_client (with the http.server, ssl and email modules its exposition imports)
# is ~25 ms of CPU to import and build, which a process that never serves /metrics (``kubetrail
# ingest``, ``detect``) need not pay; replayed in order, the changes leave the registry exactly as
# applying each at once would have. What prometheus_client checks at once (a known name, the label
# count, a counter never going down) is checked at once here too (``_Later``).
_PENDING: list[tuple[str, tuple[str, ...], str, float]] = []
_PENDING_MAX = 4096
_SPECS = {spec.name: spec for spec in METRICS if spec.name != AGE}
_CHECKPOINT_TIME = "checkpoint_time"  # the method name of a change to ``_Metrics.checkpoint_time``


def _metrics() -> _Metrics:
    """The one registry of the process. Created under a lock: the change that fills ``_PENDING`` (a
    pipeline thread) and the first scrape (the probe server's thread) can come at once, and two
    registries would leave the counts of the first commits in one that is never scraped
    (functools.cache does not prevent it); the same lock keeps a change from being queued after the replay."""
    if not _METRICS:
        with _METRICS_LOCK:
            if not _METRICS:
                _build()
    return _METRICS[0]


def _build() -> None:
    """Make the registry and replay the waiting changes into it (the caller holds the lock). It is
    published after the replay: a change made meanwhile waits on the lock, then applies after them."""
    metrics = _Metrics()
    for change in _PENDING:
        _apply(metrics, *change)
    _PENDING.clear()
    _METRICS.append(metrics)


def _apply(metrics: _Metrics, name: str, labels: tuple[str, ...], method: str, value: float) -> None:
    if method == _CHECKPOINT_TIME:
        metrics.checkpoint_time = value
        return
    m = metrics.by_name[name]
    getattr(m.labels(*labels) if labels else m, method)(value)


def _change(name: str, labels: tuple[str, ...], method: str, value: float) -> None:
    """Apply one change, or keep it for the registry that does not exist yet."""
    if not _METRICS:
        with _METRICS_LOCK:
            if not _METRICS:
                _PENDING.append((name, labels, method, value))
                if len(_PENDING) >= _PENDING_MAX:
                    _build()
                return
    _apply(_METRICS[0], name, labels, method, value)


class _Later:
    """A metric of ``METRICS`` (with its label values) before the registry exists: its changes wait
    in ``_PENDING``. Refuses at once what prometheus_client would refuse at once."""

    __slots__ = ("labels", "name")

    def __init__(self, name: str, labels: tuple[str, ...]) -> None:
        spec = _SPECS[name]  # KeyError, as the registry's by_name would raise
        if len(labels) != len(spec.labels):
            raise ValueError(f"Incorrect label count for {name}: {labels!r}")
        self.name = name
        self.labels = tuple(str(v) for v in labels)  # prometheus_client keeps label values as str

    def inc(self, amount: float = 1) -> None:
        if float(amount) < 0 and _SPECS[self.name].type == "counter":
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        _change(self.name, self.labels, "inc", amount)

    def set(self, value: float) -> None:
        float(value)  # a value that is no number fails here, as Gauge.set fails
        _change(self.name, self.labels, "set", value)

    def observe(self, amount: float) -> None:
        float(amount)
        _change(self.name, self.labels, "observe", amount)


def metric(name: str) -> Counter | Gauge | Histogram:
    """The prometheus_client object of one ``METRICS`` row (tests read values through ``render``)."""
    return _metrics().by_name[name]


def _counter(name: str, *labels: str) -> Counter:
    if not _METRICS:
        return _Later(name, labels)  # type: ignore[return-value]  # inc() as a Counter's
    m: Counter = _METRICS[0].by_name[name]  # type: ignore[assignment]  # METRICS says which type each name has
    return m.labels(*labels) if labels else m


def _gauge(name: str, *labels: str) -> Gauge:
    if not _METRICS:
        return _Later(name, labels)  # type: ignore[return-value]  # set() as a Gauge's
    m: Gauge = _METRICS[0].by_name[name]  # type: ignore[assignment]
    return m.labels(*labels) if labels else m


def _histogram(name: str) -> Histogram:
    if not _METRICS:
        return _Later(name, ())  # type: ignore[return-value]  # observe() as a Histogram's
    m: Histogram = _METRICS[0].by_name[name]  # type: ignore[assignment]
    return m


def _checkpoint_time(timestamp: float) -> None:
    if _METRICS:
        _METRICS[0].checkpoint_time = timestamp
    else:
        _change(AGE, (), _CHECKPOINT_TIME, timestamp)


class Event:
    """Base of every named event: ``apply`` moves its metrics; the fields are the log line."""

    level: ClassVar[int] = logging.DEBUG
    moves: ClassVar[tuple[str, ...]] = ()

    def apply(self) -> None:
        raise NotImplementedError

    def fields(self) -> dict[str, object]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


_listeners: list[Callable[[Event], None]] = []
_listeners_lock = threading.Lock()


def listen(callback: Callable[[Event], None]) -> Callable[[], None]:
    """Call ``callback`` with every event emitted from now on; returns the function that stops it
    (``kubetrail.testing.capture_events`` is built on this)."""
    with _listeners_lock:
        _listeners.append(callback)

    def stop() -> None:
        with _listeners_lock:
            if callback in _listeners:
                _listeners.remove(callback)

    return stop


def emit(event: Event) -> None:
    """Record one event: its metrics, one structured log line, and any listeners."""
    event.apply()
    if log.isEnabledFor(event.level):
        line = orjson.dumps({"event": type(event).__name__, **event.fields()}, default=str).decode()
        log.log(event.level, "%s", line, extra={"event": event})
    for callback in list(_listeners):
        callback(event)


def render(accept: str = "") -> tuple[bytes, str]:
    """The exposition of every metric and its content type, negotiated from an ``Accept`` header
    (the Prometheus text format 0.0.4 unless OpenMetrics is asked for)."""
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept)
    return encoder(_metrics().registry), content_type


def events() -> list[type[Event]]:
    """Every event class, in definition order."""
    return list(Event.__subclasses__())


def reference_markdown() -> str:
    """docs/reference/metrics.md's two tables, generated from ``METRICS`` and ``events()``."""
    lines = ["| metric | type | labels | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{m.name}` | {m.type} | {', '.join(m.labels) or '-'} | {m.help} |" for m in METRICS]
    lines += ["", "| event | fields | moves | log level |", "| --- | --- | --- | --- |"]
    for cls in events():
        fields = ", ".join(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        moves = ", ".join(f"`{m}`" for m in cls.moves)
        lines.append(f"| `{cls.__name__}` | {fields or '-'} | {moves} | {logging.getLevelName(cls.level)} |")
    return "\n".join(lines) + "\n"


# -- sources and the pipeline ---------------------------------------------------------------------

@dataclass(frozen=True)
class SourceRecordsReceived(Event):
    source: str
    kind: str
    count: int
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_source_records_total",
                                        "kubetrail_source_last_record_timestamp_seconds")

    def apply(self) -> None:
        _counter("kubetrail_source_records_total", self.source, self.kind).inc(self.count)
        _gauge("kubetrail_source_last_record_timestamp_seconds", self.source, self.kind).set(time.time())


@dataclass(frozen=True)
class SourceRecordsRejected(Event):
    source: str
    kind: str
    count: int
    level: ClassVar[int] = logging.INFO
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_source_records_rejected_total",)

    def apply(self) -> None:
        _counter("kubetrail_source_records_rejected_total", self.source, self.kind).inc(self.count)


@dataclass(frozen=True)
class SourceSeqGapDetected(Event):
    """A sealed source skipped ``first_seq..last_seq`` (or declared them lost with a loss marker)."""

    source: str
    first_seq: int
    last_seq: int
    level: ClassVar[int] = logging.WARNING
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_source_seq_gaps_total", "kubetrail_source_records_lost_total")

    def apply(self) -> None:
        _counter("kubetrail_source_seq_gaps_total", self.source).inc()
        _counter("kubetrail_source_records_lost_total", self.source).inc(max(0, self.last_seq - self.first_seq + 1))


@dataclass(frozen=True)
class StoreRecordsWritten(Event):
    source: str
    kind: str
    count: int
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_store_records_total",)

    def apply(self) -> None:
        _counter("kubetrail_store_records_total", self.source, self.kind).inc(self.count)


@dataclass(frozen=True)
class StoreDuplicatesSkipped(Event):
    source: str
    kind: str
    count: int
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_store_duplicates_total",)

    def apply(self) -> None:
        _counter("kubetrail_store_duplicates_total", self.source, self.kind).inc(self.count)


@dataclass(frozen=True)
class StoreBatchCommitted(Event):
    """One store transaction; ``size`` is the trail size after it (None when unknown)."""

    records: int
    seconds: float
    size: int | None = None
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_store_commit_duration_seconds", "kubetrail_trail_size_leaves")

    def apply(self) -> None:
        _histogram("kubetrail_store_commit_duration_seconds").observe(self.seconds)
        if self.size is not None:
            _gauge("kubetrail_trail_size_leaves").set(self.size)


@dataclass(frozen=True)
class RedactValuesRemoved(Event):
    kind: str
    what: str
    count: int
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_redact_values_total",)

    def apply(self) -> None:
        _counter("kubetrail_redact_values_total", self.kind, self.what).inc(self.count)


def emit_commit(records: Sequence[Record], stored: Sequence[Record], duplicates: int, rejected: int,
                seconds: float, size: int | None, source: str = "") -> None:
    """The events of one pipeline commit: what came in (per source and kind), what was stored,
    skipped as a duplicate or rejected, the values redacted in what was stored, and the commit's
    latency. ``source`` labels the rejects when there are no records to take it from."""
    received = _by_source(records)
    # the stored records are some of ``records``, each once: as many means all of them
    written = received if len(stored) == len(records) else _by_source(stored)
    left = duplicates  # records neither stored nor duplicates were refused by the store (rejected)
    for (src, kind), n in received.items():
        emit(SourceRecordsReceived(src, kind, n))
        stored_here = written.get((src, kind), 0)
        if stored_here:
            emit(StoreRecordsWritten(src, kind, stored_here))
        dups = min(left, n - stored_here)
        if dups:
            left -= dups
            emit(StoreDuplicatesSkipped(src, kind, dups))
    if rejected:
        kinds = {kind for _, kind in received}
        src = source or next(iter(received), ("unknown", ""))[0]
        emit(SourceRecordsRejected(src, kinds.pop() if len(kinds) == 1 else "unknown", rejected))
    redacted = Tally((r.kind, red.what) for r in filter(_redactions, stored) for red in r.redactions)
    for (kind, what), n in redacted.items():
        emit(RedactValuesRemoved(kind, what, n))
    emit(StoreBatchCommitted(len(stored), seconds, size))


_source_and_kind = operator.attrgetter("source", "kind")
_redactions = operator.attrgetter("redactions")


def _by_source(records: Sequence[Record]) -> dict[tuple[str, str], int]:
    """Records per (source label, kind). Counted by source object in C, then labelled once per
    source: by commit time a batch's records have gone cold in memory, and a Python pass labelling
    each record cost the writer 1.12 µs per record against 0.70 for this (issue 18, measured inside
    the writer on the 100,000-event RequestResponse file)."""
    out: dict[tuple[str, str], int] = {}
    for (ref, kind), n in Tally(map(_source_and_kind, records)).items():
        key = (ref.label(), kind)
        out[key] = out.get(key, 0) + n
    return out


# -- trail, detection, alerts ---------------------------------------------------------------------

@dataclass(frozen=True)
class TrailSizeMeasured(Event):
    size: int
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_trail_size_leaves",)

    def apply(self) -> None:
        _gauge("kubetrail_trail_size_leaves").set(self.size)


@dataclass(frozen=True)
class TrailCheckpointSigned(Event):
    """A checkpoint was signed (or, at start-up, the newest stored one was read: ``timestamp``
    is the checkpoint's own time in seconds, so the age survives a restart)."""

    origin: str
    size: int
    timestamp: float
    level: ClassVar[int] = logging.INFO
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_trail_checkpoint_size_leaves",
                                        "kubetrail_trail_checkpoint_timestamp_seconds",
                                        "kubetrail_trail_checkpoint_age_seconds")

    def apply(self) -> None:
        _gauge("kubetrail_trail_checkpoint_size_leaves").set(self.size)
        _gauge("kubetrail_trail_checkpoint_timestamp_seconds").set(self.timestamp)
        _checkpoint_time(self.timestamp)


@dataclass(frozen=True)
class DetectAlertRaised(Event):
    rule: str
    priority: str
    subject: str = ""
    level: ClassVar[int] = logging.INFO
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_detect_alerts_total",)

    def apply(self) -> None:
        _counter("kubetrail_detect_alerts_total", self.rule, self.priority).inc()


@dataclass(frozen=True)
class DetectLagMeasured(Event):
    lag_seconds: float
    pending_records: int
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_detect_lag_seconds", "kubetrail_detect_pending_records")

    def apply(self) -> None:
        _gauge("kubetrail_detect_lag_seconds").set(self.lag_seconds)
        _gauge("kubetrail_detect_pending_records").set(self.pending_records)


@dataclass(frozen=True)
class AlertSinkDelivered(Event):
    sink: str
    count: int = 1
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_alert_sink_deliveries_total",)

    def apply(self) -> None:
        _counter("kubetrail_alert_sink_deliveries_total", self.sink).inc(self.count)


@dataclass(frozen=True)
class AlertSinkSendError(Event):
    sink: str
    error: str
    level: ClassVar[int] = logging.WARNING
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_alert_sink_errors_total",)

    def apply(self) -> None:
        _counter("kubetrail_alert_sink_errors_total", self.sink).inc()


@dataclass(frozen=True)
class AlertOutboxMeasured(Event):
    pending: int
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_alert_outbox_alerts",)

    def apply(self) -> None:
        _gauge("kubetrail_alert_outbox_alerts").set(self.pending)


# -- agent and collector --------------------------------------------------------------------------

@dataclass(frozen=True)
class BufferSizeMeasured(Event):
    size_bytes: int
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_buffer_size_bytes",)

    def apply(self) -> None:
        _gauge("kubetrail_buffer_size_bytes").set(self.size_bytes)


@dataclass(frozen=True)
class BufferRecordsDropped(Event):
    count: int
    reason: str
    level: ClassVar[int] = logging.WARNING
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_buffer_records_dropped_total",)

    def apply(self) -> None:
        _counter("kubetrail_buffer_records_dropped_total", self.reason).inc(self.count)


@dataclass(frozen=True)
class BrokerLagMeasured(Event):
    stream: str
    pending: int
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_broker_lag_records",)

    def apply(self) -> None:
        _gauge("kubetrail_broker_lag_records", self.stream).set(self.pending)


# -- HTTP: the audit webhook and the dashboard ----------------------------------------------------

@dataclass(frozen=True)
class WebhookEventsAccepted(Event):
    events: int
    rejected: int
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_webhook_events_total", "kubetrail_webhook_rejected_total")

    def apply(self) -> None:
        _counter("kubetrail_webhook_events_total").inc(self.events)
        _counter("kubetrail_webhook_rejected_total").inc(self.rejected)


@dataclass(frozen=True)
class WebhookResponseSent(Event):
    code: int
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_webhook_responses_total",)

    def apply(self) -> None:
        _counter("kubetrail_webhook_responses_total", str(self.code)).inc()


@dataclass(frozen=True)
class WebhookHandshakeError(Event):
    level: ClassVar[int] = logging.INFO
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_webhook_tls_failed_total",)

    def apply(self) -> None:
        _counter("kubetrail_webhook_tls_failed_total").inc()


WebhookRefusal = Literal["connections_refused", "header_timeouts", "unauthenticated_evicted",
                         "client_limit_refused"]


@dataclass(frozen=True)
class WebhookConnectionRefused(Event):
    """A connection closed by the webhook's flood and slowloris defences; ``reason`` names which."""

    reason: WebhookRefusal
    level: ClassVar[int] = logging.INFO
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_webhook_connections_refused_total",
                                        "kubetrail_webhook_header_timeouts_total",
                                        "kubetrail_webhook_unauthenticated_evicted_total",
                                        "kubetrail_webhook_client_limit_refused_total")

    def apply(self) -> None:
        _counter(f"kubetrail_webhook_{self.reason}_total").inc()


@dataclass(frozen=True)
class WebRequestServed(Event):
    route: str
    code: int
    moves: ClassVar[tuple[str, ...]] = ("kubetrail_web_requests_total",)

    def apply(self) -> None:
        _counter("kubetrail_web_requests_total", self.route, str(self.code)).inc()


if __name__ == "__main__":  # the generated part of docs/reference/metrics.md
    print(reference_markdown(), end="")
