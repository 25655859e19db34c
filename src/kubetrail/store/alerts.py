"""The alert tables (migration 0003): alerts with their evidence, and the delivery outbox.

The alerts package owns the model, de-duplication and rate limits (``kubetrail.alerts``); this is
only how its rows are kept. An alert and its outbox rows are written in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubetrail.store.api import AlertRow, EventRow, EvidenceRow
from kubetrail.store.db import Engine, placeholders

_SELECT = ("SELECT id, rule, priority, level, time, subject, output, fields_json, tags_json, origin, dedup_key, "
           "suppressed, last_seen, occurrences, occurrence FROM alerts")
# a store opened read-only may predate migration 0010 (aggregation)
_SELECT_0003 = ("SELECT id, rule, priority, level, time, subject, output, fields_json, tags_json, origin, dedup_key, "
                "suppressed, NULL, 1 + suppressed, '' FROM alerts")


def _row(r: Sequence[object]) -> AlertRow:
    aid, rule, prio, level, t, subject, output, fields, tags, origin, dedup, suppressed, last, count, occ = r
    return AlertRow(id=aid, rule=rule, priority=prio, level=level, time=t, subject=subject, output=output,  # type: ignore[arg-type]
                    fields_json=fields, tags_json=tags, origin=origin, dedup_key=dedup, suppressed=suppressed,  # type: ignore[arg-type]
                    last_seen=last if last is not None else t, count=count, occurrence=occ)  # type: ignore[arg-type]


# The evidence shown with an alert: the first N occurrences by event time, and the latest one.
_SHOWN = """
WITH occ AS (
    SELECT alert_id, occurrence, MIN(time) AS t FROM alert_events WHERE alert_id IN ({ids})
    GROUP BY alert_id, occurrence),
ranked AS (
    SELECT alert_id, occurrence, t,
           ROW_NUMBER() OVER (PARTITION BY alert_id ORDER BY t, occurrence) AS first_rank,
           ROW_NUMBER() OVER (PARTITION BY alert_id ORDER BY t DESC, occurrence DESC) AS last_rank
    FROM occ)
SELECT e.alert_id, e.key, e.audit_id, e.stage, e.leaf_index FROM alert_events e
JOIN ranked r ON e.alert_id = r.alert_id AND e.occurrence = r.occurrence
WHERE r.first_rank <= ? OR r.last_rank = 1
ORDER BY e.alert_id, r.t, e.occurrence, e.leaf_index, e.key"""


class AlertTables:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.db = engine.db
        self._aggregated: bool | None = None

    @property
    def aggregated(self) -> bool:
        """Whether the store has migration 0010 (a read-only open of an older store has not)."""
        if self._aggregated is None:
            self._aggregated = self.engine.has_table("alert_events")
        return self._aggregated

    @property
    def _select(self) -> str:
        return _SELECT if self.aggregated else _SELECT_0003

    def lock(self) -> None:
        """One alert writer at a time (de-duplication reads, then writes) until the transaction ends."""
        self.engine.lock("alerts")

    def find_dedup(self, dedup_key: str) -> int | None:
        row = self.db.execute("SELECT id FROM alerts WHERE dedup_key = ?", (dedup_key,)).fetchone()
        return int(row[0]) if row else None

    def window(self, rule: str, subject: str, after: int, upto: int) -> tuple[int, int | None]:
        n, newest = self.db.execute(
            "SELECT COUNT(*), MAX(id) FROM alerts WHERE rule = ? AND subject = ? AND time > ? AND time <= ?",
            (rule, subject, after, upto)).fetchone()
        return int(n), (int(newest) if newest is not None else None)

    def insert(self, a: AlertRow, created_ns: int) -> int | None:
        """The new alert's id; None when its ``dedup_key`` is already stored."""
        row = self.db.execute(
            "INSERT INTO alerts (rule, priority, level, time, subject, output, fields_json, tags_json, origin, "
            "dedup_key, suppressed, created_ns, last_seen, occurrences, occurrence) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedup_key) DO NOTHING RETURNING id",
            (a.rule, a.priority, a.level, a.time, a.subject, a.output, a.fields_json, a.tags_json, a.origin,
             a.dedup_key, a.suppressed, created_ns, a.last_seen or a.time, a.count, a.occurrence)).fetchone()
        return int(row[0]) if row else None

    def stateful_between(self, lo: int, hi: int) -> list[tuple[int, int, str]]:
        """(id, time, fields_json) of stateful-detector alerts with lo <= time <= hi."""
        return [(int(i), int(t), str(f)) for i, t, f in self.db.execute(
            "SELECT id, time, fields_json FROM alerts WHERE origin = 'stateful' AND time >= ? AND time <= ?", (lo, hi))]

    def set_fields(self, rows: Sequence[tuple[str, int]]) -> None:
        """(fields_json, id): replace alerts' fields (notes added after the alert was decided)."""
        self.db.executemany("UPDATE alerts SET fields_json = ? WHERE id = ?", rows)
    def add_events(self, rows: Sequence[EventRow]) -> int:
        """(alert_id, key, occurrence, time, audit_id, stage, leaf_index) rows; returns how many were new."""
        n = 0
        for r in rows:
            n += self.db.execute("INSERT INTO alert_events (alert_id, key, occurrence, time, audit_id, stage, "
                                 "leaf_index) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", r).rowcount
        return n

    def has_occurrence(self, alert_id: int, occurrence: str) -> bool:
        return self.db.execute("SELECT 1 FROM alert_events WHERE alert_id = ? AND occurrence = ? LIMIT 1",
                               (alert_id, occurrence)).fetchone() is not None

    def fold(self, alert_id: int, time: int, new_occurrence: bool, first: AlertRow | None) -> None:
        """One more occurrence (``new_occurrence``: a request not yet counted) at event ``time``;
        ``first``: it is now the earliest, so the alert describes it (time, output, fields)."""
        if new_occurrence:
            self.db.execute("UPDATE alerts SET occurrences = occurrences + 1, suppressed = suppressed + 1, "
                            "last_seen = CASE WHEN last_seen IS NULL OR last_seen < ? THEN ? ELSE last_seen END "
                            "WHERE id = ?", (time, time, alert_id))
        if first is not None:
            self.db.execute("UPDATE alerts SET time = ?, output = ?, fields_json = ?, occurrence = ? WHERE id = ?",
                            (first.time, first.output, first.fields_json, first.occurrence, alert_id))

    def events(self, alert_id: int, limit: int | None = None, offset: int = 0) -> list[EventRow]:
        """Every occurrence folded into an alert, in event-time order."""
        if not self.aggregated:
            return [(alert_id, key, aid or key, 0, aid, stage, leaf) for _, key, aid, stage, leaf in
                    self.evidence([alert_id])]
        sql = ("SELECT alert_id, key, occurrence, time, audit_id, stage, leaf_index FROM alert_events "
               "WHERE alert_id = ? ORDER BY time, occurrence, leaf_index, key")
        if limit is not None:
            sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
        return [tuple(r) for r in self.db.execute(sql, (alert_id,))]  # type: ignore[misc]

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
        sql = self._select + (" WHERE " + " AND ".join(parts) if parts else "") + " ORDER BY time, id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [_row(r) for r in self.db.execute(sql, params)]

    def get(self, alert_id: int) -> AlertRow | None:
        row = self.db.execute(self._select + " WHERE id = ?", (alert_id,)).fetchone()
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
        sql = self._select + (" WHERE " + " AND ".join(parts) if parts else "") + " ORDER BY time DESC, id DESC LIMIT ?"
        return [_row(r) for r in self.db.execute(sql, [*params, int(limit)])]

    def count_by_priority(self, since: int | None = None) -> dict[str, int]:
        sql = "SELECT priority, COUNT(*) FROM alerts" + (" WHERE time >= ?" if since is not None else "")
        rows = self.db.execute(sql + " GROUP BY priority", [since] if since is not None else [])
        return {str(p): int(n) for p, n in rows}

    def evidence(self, alert_ids: Sequence[int], first: int = 5) -> list[EvidenceRow]:
        """Evidence per alert: its first ``first`` occurrences and the latest (``alert_events``), or
        for alerts stored before aggregation their ``alert_evidence`` rows."""
        out: list[EvidenceRow] = []
        ids = list(alert_ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            shown = [tuple(r) for r in self.db.execute(_SHOWN.format(ids=placeholders(len(chunk))),
                                                       [*chunk, first])] if self.aggregated else []
            have = {r[0] for r in shown}
            old = [a for a in chunk if a not in have]
            if old:
                shown += [tuple(r) for r in self.db.execute(
                    f"SELECT alert_id, key, audit_id, stage, leaf_index FROM alert_evidence WHERE alert_id IN "
                    f"({placeholders(len(old))}) ORDER BY alert_id, leaf_index", old)]
            out += shown  # type: ignore[arg-type]
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
