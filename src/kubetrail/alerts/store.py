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
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from kubetrail.alerts.alert import Alert, Evidence, priority_level
from kubetrail.alerts.config import DetectSettings, load_settings
from kubetrail.alerts.route import MAX_EVIDENCE, decide

_settings_cache: dict[str, tuple[float, DetectSettings]] = {}


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


def record_alert(store: Any, alert: Alert, settings: DetectSettings | None = None) -> int | None:
    """Store one alert; returns its id, or None when de-duplicated or rate-limited."""
    return record_alerts(store, [alert], settings)[0]


def record_alerts(store: Any, alerts: Sequence[Alert], settings: DetectSettings | None = None) -> list[int | None]:
    """Store alerts in one transaction, in order; each gets its id or None (folded into another)."""
    if not alerts:
        return []
    settings = settings or settings_for(store.data_dir)
    conn: sqlite3.Connection = store.connection
    out: list[int | None] = []
    now = time.time_ns()
    conn.execute("BEGIN IMMEDIATE")
    try:
        for alert in alerts:
            d = decide(conn, alert, settings.rate_limit)
            if d.new:
                alert.id = _insert(conn, alert, now)
                _add_evidence(conn, alert.id, alert.evidence)
                _enqueue(conn, alert, settings, now)
                out.append(alert.id)
            else:
                assert d.fold_into is not None
                if d.reason == "rate_limited":
                    conn.execute("UPDATE alerts SET suppressed = suppressed + 1 WHERE id = ?", (d.fold_into,))
                _add_evidence(conn, d.fold_into, alert.evidence)
                out.append(None)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return out


def _insert(conn: sqlite3.Connection, a: Alert, now: int) -> int:
    cur = conn.execute(
        "INSERT INTO alerts (rule, priority, level, time, subject, output, fields_json, tags_json, origin, "
        "dedup_key, suppressed, created_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (a.rule, a.priority, a.priority_level, a.time, a.subject, a.output,
         orjson.dumps(a.fields, default=str).decode(), orjson.dumps(a.tags).decode(), a.origin, a.dedup_key,
         a.suppressed, now))
    return int(cur.lastrowid or 0)


def _add_evidence(conn: sqlite3.Connection, alert_id: int, evidence: Iterable[Evidence]) -> None:
    have = conn.execute("SELECT COUNT(*) FROM alert_evidence WHERE alert_id = ?", (alert_id,)).fetchone()[0]
    rows = [(alert_id, e.key, e.audit_id, e.stage, e.leaf_index) for e in evidence]
    rows = rows[:max(MAX_EVIDENCE - have, 0)]
    conn.executemany("INSERT INTO alert_evidence (alert_id, key, audit_id, stage, leaf_index) VALUES (?, ?, ?, ?, ?) "
                     "ON CONFLICT DO NOTHING", rows)


def _enqueue(conn: sqlite3.Connection, a: Alert, settings: DetectSettings, now: int) -> None:
    rows = [(a.id, s.name, now, now) for s in settings.sinks if a.priority_level <= priority_level(s.min_priority)]
    conn.executemany("INSERT INTO outbox (alert_id, sink, next_attempt_ns, created_ns) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT DO NOTHING", rows)


_SELECT = ("SELECT id, rule, priority, time, subject, output, fields_json, tags_json, origin, dedup_key, suppressed "
           "FROM alerts")


def list_alerts(store: Any, since: int | None = None, until: int | None = None, rule: str | None = None,
                min_priority: str | None = None, limit: int | None = None) -> list[Alert]:
    """Stored alerts in time order, with their evidence (ordered by leaf index)."""
    parts, params = [], []
    if since is not None:
        parts.append("time >= ?")
        params.append(since)
    if until is not None:
        parts.append("time < ?")
        params.append(until)
    if rule:
        parts.append("rule = ?")
        params.append(rule)
    if min_priority:
        parts.append("level <= ?")
        params.append(priority_level(min_priority))
    sql = _SELECT + (" WHERE " + " AND ".join(parts) if parts else "") + " ORDER BY time, id"
    if limit:
        sql += f" LIMIT {int(limit)}"
    alerts = [_alert(row) for row in store.connection.execute(sql, params)]
    _attach_evidence(store.connection, alerts)
    return alerts


def get_alert(store: Any, alert_id: int) -> Alert | None:
    row = store.connection.execute(_SELECT + " WHERE id = ?", (alert_id,)).fetchone()
    if row is None:
        return None
    alert = _alert(row)
    _attach_evidence(store.connection, [alert])
    return alert


def _alert(row: tuple[Any, ...]) -> Alert:
    aid, rule, prio, t, subject, output, fields, tags, origin, dedup, suppressed = row
    return Alert(rule=rule, priority=prio, time=t, subject=subject, output=output, fields=orjson.loads(fields),
                 tags=orjson.loads(tags), origin=origin, dedup_key=dedup, id=aid, suppressed=suppressed)


def _attach_evidence(conn: sqlite3.Connection, alerts: list[Alert]) -> None:
    by_id = {a.id: a for a in alerts}
    ids = list(by_id)
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        q = (f"SELECT alert_id, key, audit_id, stage, leaf_index FROM alert_evidence WHERE alert_id IN "
             f"({','.join('?' * len(chunk))}) ORDER BY alert_id, leaf_index")
        for aid, key, audit_id, stage, leaf in conn.execute(q, chunk):
            by_id[aid].evidence.append(Evidence(key=key, audit_id=audit_id, stage=stage, leaf_index=leaf))
