"""The alert tables (migration 0003): alerts with their evidence, and the delivery outbox.

The alerts package owns the model, de-duplication and rate limits (``kubetrail.alerts``); this is
only how its rows are kept. An alert and its outbox rows are written in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubetrail.store.api import AlertRow, EvidenceRow
from kubetrail.store.db import Engine, placeholders

_SELECT = ("SELECT id, rule, priority, level, time, subject, output, fields_json, tags_json, origin, dedup_key, "
           "suppressed FROM alerts")


def _row(r: Sequence[object]) -> AlertRow:
    aid, rule, prio, level, t, subject, output, fields, tags, origin, dedup, suppressed = r
    return AlertRow(id=aid, rule=rule, priority=prio, level=level, time=t, subject=subject, output=output,  # type: ignore[arg-type]
                    fields_json=fields, tags_json=tags, origin=origin, dedup_key=dedup, suppressed=suppressed)  # type: ignore[arg-type]


class AlertTables:
    def __init__(self, engine: Engine) -> None:
        self.db = engine.db

    def find_dedup(self, dedup_key: str) -> int | None:
        row = self.db.execute("SELECT id FROM alerts WHERE dedup_key = ?", (dedup_key,)).fetchone()
        return int(row[0]) if row else None

    def window(self, rule: str, subject: str, after: int, upto: int) -> tuple[int, int | None]:
        n, newest = self.db.execute(
            "SELECT COUNT(*), MAX(id) FROM alerts WHERE rule = ? AND subject = ? AND time > ? AND time <= ?",
            (rule, subject, after, upto)).fetchone()
        return int(n), (int(newest) if newest is not None else None)

    def insert(self, a: AlertRow, created_ns: int) -> int:
        row = self.db.execute(
            "INSERT INTO alerts (rule, priority, level, time, subject, output, fields_json, tags_json, origin, "
            "dedup_key, suppressed, created_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (a.rule, a.priority, a.level, a.time, a.subject, a.output, a.fields_json, a.tags_json, a.origin,
             a.dedup_key, a.suppressed, created_ns)).fetchone()
        return int(row[0])

    def stateful_between(self, lo: int, hi: int) -> list[tuple[int, int, str]]:
        """(id, time, fields_json) of stateful-detector alerts with lo <= time <= hi."""
        return [(int(i), int(t), str(f)) for i, t, f in self.db.execute(
            "SELECT id, time, fields_json FROM alerts WHERE origin = 'stateful' AND time >= ? AND time <= ?", (lo, hi))]

    def set_fields(self, rows: Sequence[tuple[str, int]]) -> None:
        """(fields_json, id): replace alerts' fields (notes added after the alert was decided)."""
        self.db.executemany("UPDATE alerts SET fields_json = ? WHERE id = ?", rows)

    def add_suppressed(self, alert_id: int) -> None:
        self.db.execute("UPDATE alerts SET suppressed = suppressed + 1 WHERE id = ?", (alert_id,))

    def evidence_count(self, alert_id: int) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM alert_evidence WHERE alert_id = ?",
                                   (alert_id,)).fetchone()[0])

    def add_evidence(self, rows: Sequence[EvidenceRow]) -> None:
        self.db.executemany("INSERT INTO alert_evidence (alert_id, key, audit_id, stage, leaf_index) "
                            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows)

    def list(self, since: int | None = None, until: int | None = None, rule: str | None = None,
             max_level: int | None = None, limit: int | None = None) -> list[AlertRow]:
        """Alerts in time order; ``max_level`` keeps those at least that severe (0 = Emergency)."""
        parts: list[str] = []
        params: list[object] = []
        for cond, value in (("time >= ?", since), ("time < ?", until), ("rule = ?", rule or None),
                            ("level <= ?", max_level)):
            if value is not None:
                parts.append(cond)
                params.append(value)
        sql = _SELECT + (" WHERE " + " AND ".join(parts) if parts else "") + " ORDER BY time, id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [_row(r) for r in self.db.execute(sql, params)]

    def get(self, alert_id: int) -> AlertRow | None:
        row = self.db.execute(_SELECT + " WHERE id = ?", (alert_id,)).fetchone()
        return _row(row) if row else None

    def page(self, *, rule: str | None = None, max_level: int | None = None, subject: str | None = None,
             since: int | None = None, until: int | None = None, before: tuple[int, int] | None = None,
             limit: int = 50) -> list[AlertRow]:
        parts: list[str] = []
        params: list[object] = []
        for cond, value in (("time >= ?", since), ("time < ?", until), ("rule = ?", rule or None),
                            ("level <= ?", max_level), ("subject = ?", subject or None)):
            if value is not None:
                parts.append(cond)
                params.append(value)
        if before is not None:
            parts.append("(time < ? OR (time = ? AND id < ?))")
            params += [before[0], before[0], before[1]]
        sql = _SELECT + (" WHERE " + " AND ".join(parts) if parts else "") + " ORDER BY time DESC, id DESC LIMIT ?"
        return [_row(r) for r in self.db.execute(sql, [*params, int(limit)])]

    def count_by_priority(self, since: int | None = None) -> dict[str, int]:
        sql = "SELECT priority, COUNT(*) FROM alerts" + (" WHERE time >= ?" if since is not None else "")
        rows = self.db.execute(sql + " GROUP BY priority", [since] if since is not None else [])
        return {str(p): int(n) for p, n in rows}

    def evidence(self, alert_ids: Sequence[int]) -> list[EvidenceRow]:
        out: list[EvidenceRow] = []
        ids = list(alert_ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            out += [tuple(r) for r in self.db.execute(  # type: ignore[misc]
                f"SELECT alert_id, key, audit_id, stage, leaf_index FROM alert_evidence WHERE alert_id IN "
                f"({placeholders(len(chunk))}) ORDER BY alert_id, leaf_index", chunk)]
        return out

    def max_id(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(id), 0) FROM alerts").fetchone()[0])


class OutboxTable:
    """One row per (alert, sink); rows are never dropped, only marked delivered."""

    def __init__(self, engine: Engine) -> None:
        self.db = engine.db

    def enqueue(self, rows: Sequence[tuple[int, str, int, int]]) -> None:
        self.db.executemany("INSERT INTO outbox (alert_id, sink, next_attempt_ns, created_ns) VALUES (?, ?, ?, ?) "
                            "ON CONFLICT DO NOTHING", rows)

    def due(self, now: int, limit: int) -> list[tuple[int, int, str, int]]:
        return [tuple(r) for r in self.db.execute(  # type: ignore[misc]
            "SELECT id, alert_id, sink, attempts FROM outbox WHERE delivered_ns IS NULL AND next_attempt_ns <= ? "
            "ORDER BY id LIMIT ?", (now, limit))]

    def delivered(self, row_id: int, at: int) -> None:
        self.db.execute("UPDATE outbox SET delivered_ns = ?, attempts = attempts + 1, last_error = '' WHERE id = ?",
                        (at, row_id))

    def failed(self, row_id: int, attempts: int, retry_at: int, error: str) -> None:
        self.db.execute("UPDATE outbox SET attempts = ?, next_attempt_ns = ?, last_error = ? WHERE id = ?",
                        (attempts, retry_at, error, row_id))

    def hold_sink(self, sink: str, until: int) -> None:
        self.db.execute("UPDATE outbox SET next_attempt_ns = ? WHERE sink = ? AND delivered_ns IS NULL "
                        "AND next_attempt_ns < ?", (until, sink, until))

    def retry_now(self) -> int:
        return int(self.db.execute("UPDATE outbox SET next_attempt_ns = 0 WHERE delivered_ns IS NULL").rowcount)

    def pending(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM outbox WHERE delivered_ns IS NULL").fetchone()[0])

    def status(self) -> list[tuple[str, int, int, str]]:
        return [(s, int(d or 0), int(p or 0), e or "") for s, d, p, e in self.db.execute(
            "SELECT sink, SUM(CASE WHEN delivered_ns IS NOT NULL THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN delivered_ns IS NULL THEN 1 ELSE 0 END), "
            "MAX(CASE WHEN delivered_ns IS NULL THEN last_error END) FROM outbox GROUP BY sink ORDER BY sink")]
