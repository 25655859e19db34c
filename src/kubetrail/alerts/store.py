"""Alerts in the store: record (with de-dup, rate limit and outbox rows, in one transaction), list.

API other parts call::

    from kubetrail.alerts.alert import Alert, Evidence
    from kubetrail.alerts.store import record_alert, list_alerts
    alert_id = record_alert(store, Alert(rule=..., priority="Warning", time=ns, subject=user,
                                         output=text, tags=["T1528"], evidence=[Evidence.of(rec)],
                                         origin="credentials"))
    # -> the new alert's id, or None when it was folded into an existing alert

A new alert gets one ``outbox`` row per configured sink whose ``min_priority`` it reaches (see
``alerts/outbox.py``); delivery happens later, never inside the caller's transaction.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from kubetrail import telemetry
from kubetrail.alerts.alert import Alert, Evidence, priority_level
from kubetrail.alerts.config import DetectSettings, load_settings
from kubetrail.alerts.route import FIRST_EVIDENCE, MAX_EVIDENCE, decide, occurrence_of
from kubetrail.alerts.tuning import disabled, excepted
from kubetrail.store.api import AlertRow, AlertsRepo, EventRow, OutboxRepo, Repos, Store

_settings_cache: dict[str, tuple[float, DetectSettings]] = {}


@dataclass(frozen=True)
class AlertEvent:
    """One occurrence folded into an alert: the request, its event time, one evidence record."""

    occurrence: str
    time: int
    evidence: Evidence

    def to_json(self) -> dict[str, object]:
        from kubetrail.timefmt import format_ns

        return {"occurrence": self.occurrence, "time": format_ns(self.time), "time_ns": self.time,
                **self.evidence.to_json()}


class AlertReader(Protocol):
    @property
    def alerts(self) -> AlertsRepo: ...


def settings_for(data_dir: str) -> DetectSettings:
    """The data directory's ``detect.yaml``, re-read when the file changes."""
    path = os.path.join(data_dir, "detect.yaml")
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        mtime = -1.0
    cached = _settings_cache.get(data_dir)
    if cached is None or cached[0] != mtime:
        cached = (mtime, load_settings(data_dir))
        _settings_cache[data_dir] = cached
    return cached[1]


def record_alert(store: Store, alert: Alert, settings: DetectSettings | None = None) -> int | None:
    """Store one alert; returns its id, or None when de-duplicated or rate-limited."""
    return record_alerts(store, [alert], settings)[0]


def record_alerts(store: Store, alerts: Sequence[Alert], settings: DetectSettings | None = None,
                  tally: dict[str, int] | None = None) -> list[int | None]:
    """Store alerts in one transaction, in order; each gets its id or None (folded into another).

    ``tally`` (optional) counts what became of those that are not new: ``folded`` (an occurrence the
    stored alert did not have yet), ``known`` (already recorded: detection run again over the same
    records changes nothing) and ``tuned_out`` (detect.yaml's disable/exceptions)."""
    counts = tally if tally is not None else {}
    if not alerts:
        return []
    settings = settings or settings_for(store.data_dir)
    out: list[int | None] = []
    now = time.time_ns()
    with store.transaction() as tx:
        tx.alerts.lock()  # several collectors: de-duplicate and rate-limit against each other's alerts too
        for alert in alerts:
            if tuned_out(alert, settings):
                counts["tuned_out"] = counts.get("tuned_out", 0) + 1
                out.append(None)
                continue
            occurrence = occurrence_of(alert)
            d = decide(tx.alerts, alert, settings)
            if d.new:
                alert.last_seen, alert.count = alert.time, 1
                alert.id = tx.alerts.insert(_row(alert, occurrence), now)
                assert alert.id is not None  # the lock keeps dedup_key unique between decide and insert
                tx.alerts.add_events(_events(alert.id, alert, occurrence))
                _enqueue(tx.outbox, alert, settings, now)
                out.append(alert.id)
            else:
                assert d.fold_into is not None
                what = "folded" if _fold(tx, d.fold_into, alert, occurrence) else "known"
                counts[what] = counts.get(what, 0) + 1
                out.append(None)
    for alert, alert_id in zip(alerts, out, strict=True):  # after the commit: only alerts that exist
        if alert_id is not None:
            telemetry.emit(telemetry.DetectAlertRaised(rule=alert.rule, priority=alert.priority,
                                                       subject=alert.subject))
    return out


def tuned_out(alert: Alert, settings: DetectSettings) -> bool:
    """Whether ``disable:`` or an ``exceptions:`` entry of detect.yaml drops this alert."""
    if disabled(settings.disable, alert.rule, (*alert.tags, alert.origin)):
        return True
    if not settings.exceptions:
        return False
    values = {"subject": alert.subject, **alert.group, **{f"fields.{k}": v if isinstance(v, str) else str(v)
                                                          for k, v in alert.fields.items()}}
    return bool(excepted(settings.exceptions, alert.rule, values))


def _fold(tx: Repos, alert_id: int, alert: Alert, occurrence: str) -> bool:
    """Add one occurrence to a stored alert: its evidence, the count, last seen, and — when it is now
    the earliest (event time, then occurrence id) — the output and fields that describe it. Returns
    whether the occurrence was new to the alert."""
    fresh = not tx.alerts.has_occurrence(alert_id, occurrence)
    tx.alerts.add_events(_events(alert_id, alert, occurrence))
    stored = tx.alerts.get(alert_id)
    earlier = stored is not None and (alert.time, occurrence) < (stored.time, stored.occurrence or "\uffff")
    tx.alerts.fold(alert_id, alert.time, fresh, _row(alert, occurrence) if earlier else None)
    return fresh


def _row(a: Alert, occurrence: str = "") -> AlertRow:
    return AlertRow(rule=a.rule, priority=a.priority, level=a.priority_level, time=a.time, subject=a.subject,
                    output=a.output, fields_json=orjson.dumps(a.fields, default=str).decode(),
                    tags_json=orjson.dumps(a.tags).decode(), origin=a.origin, dedup_key=a.dedup_key,
                    suppressed=a.suppressed, last_seen=a.last_seen or a.time, count=a.count, occurrence=occurrence)


LATE_NOTE = "late_events_after_decision"


def note_late_events(store: Store, times: Sequence[int], window_ns: int) -> int:
    """Mark the stateful alerts already decided within ``window_ns`` of these late records' event
    times: ``fields.late_events_after_decision`` counts the records they were decided without.
    Returns how many alerts were marked."""
    if not times:
        return 0
    with store.transaction() as tx:
        updates = []
        for aid, t, fields_json in tx.alerts.stateful_between(min(times) - window_ns, max(times) + window_ns):
            n = sum(1 for x in times if abs(x - t) <= window_ns)
            if n:
                fields = orjson.loads(fields_json)
                fields[LATE_NOTE] = int(fields.get(LATE_NOTE, 0)) + n
                updates.append((orjson.dumps(fields, default=str).decode(), aid))
        tx.alerts.set_fields(updates)
    return len(updates)


def _events(alert_id: int, a: Alert, occurrence: str) -> list[EventRow]:
    return [(alert_id, e.key, occurrence, a.time, e.audit_id, e.stage, e.leaf_index) for e in a.evidence[:MAX_EVIDENCE]]


def _enqueue(outbox: OutboxRepo, a: Alert, settings: DetectSettings, now: int) -> None:
    assert a.id is not None
    outbox.enqueue([(a.id, s.name, now, now) for s in settings.sinks
                    if a.priority_level <= priority_level(s.min_priority)])


def list_alerts(store: AlertReader, since: int | None = None, until: int | None = None, rule: str | None = None,
                min_priority: str | None = None, limit: int | None = None) -> list[Alert]:
    """Stored alerts in time order, with their evidence: the records of their first ``FIRST_EVIDENCE``
    occurrences by event time and of the latest (``alert_events`` lists every occurrence)."""
    rows = store.alerts.list(since=since, until=until, rule=rule,
                             max_level=priority_level(min_priority) if min_priority else None, limit=limit)
    alerts = [_alert(r) for r in rows]
    _attach_evidence(store.alerts, alerts)
    return alerts


def page_alerts(store: AlertReader, *, rule: str | None = None, min_priority: str | None = None,
                subject: str | None = None, since: int | None = None, until: int | None = None,
                before: tuple[int, int] | None = None, limit: int = 50) -> list[Alert]:
    """One page of alerts, newest first; ``before`` = (time, id) of the last alert of the previous page."""
    rows = store.alerts.page(rule=rule, max_level=priority_level(min_priority) if min_priority else None,
                             subject=subject, since=since, until=until, before=before, limit=limit)
    alerts = [_alert(r) for r in rows]
    _attach_evidence(store.alerts, alerts)
    return alerts


def get_alert(store: AlertReader, alert_id: int) -> Alert | None:
    row = store.alerts.get(alert_id)
    if row is None:
        return None
    alert = _alert(row)
    _attach_evidence(store.alerts, [alert])
    return alert


def _alert(r: AlertRow) -> Alert:
    return Alert(rule=r.rule, priority=r.priority, time=r.time, subject=r.subject, output=r.output,
                 fields=orjson.loads(r.fields_json), tags=orjson.loads(r.tags_json), origin=r.origin,
                 dedup_key=r.dedup_key, id=r.id, suppressed=r.suppressed, last_seen=r.last_seen or r.time,
                 count=r.count)


def alert_events(store: AlertReader, alert_id: int, limit: int | None = None, offset: int = 0) -> list[AlertEvent]:
    """Every occurrence folded into an alert (the suppressed ones too), in event-time order."""
    return [AlertEvent(occurrence=occ, time=t, evidence=Evidence(key=key, audit_id=aid, stage=stage, leaf_index=leaf))
            for _, key, occ, t, aid, stage, leaf in store.alerts.events(alert_id, limit, offset)]


def _attach_evidence(repo: AlertsRepo, alerts: list[Alert], first: int = FIRST_EVIDENCE) -> None:
    by_id = {a.id: a for a in alerts}
    for aid, key, audit_id, stage, leaf in repo.evidence([i for i in by_id if i is not None], first):
        by_id[aid].evidence.append(Evidence(key=key, audit_id=audit_id, stage=stage, leaf_index=leaf))
