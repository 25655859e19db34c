"""Record keys across key versions (migration 0007, docs/specs/event-identity.md §5), and the light
by-auditID read the audit-ID reuse check needs.

``key_aliases`` maps the current key of an entry stored under an older key version to its leaf;
``append`` refuses a key that is an entry's key or an alias. ``key_state`` holds the progress of
``kubetrail store rekey`` (``legacy_below``: entries below were keyed v1; ``rekeyed_upto``; the
``stored_twice`` and ``without_body`` counts).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

from kubetrail.store.api import AuditIdRow
from kubetrail.store.db import Engine, placeholders
from kubetrail.store.heads import key_head, text_head


class KeyTables:
    def __init__(self, engine: Engine) -> None:
        self.db = engine.db
        self.engine = engine

    def state(self, name: str) -> int | None:
        if not self.engine.has_table("key_state"):
            return None
        row = self.db.execute("SELECT value FROM key_state WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else None

    def pending(self) -> tuple[int, int] | None:
        legacy = self.state("legacy_below")
        return None if legacy is None else (self.state("rekeyed_upto") or 0, legacy)

    def taken(self, keys: Sequence[str]) -> set[str]:
        """Which of these keys are entries' own keys."""
        found: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = list(keys[i:i + 500])
            heads = sorted({key_head(k) for k in chunk})
            found.update(k for (k,) in self.db.execute(
                f"SELECT key FROM entries WHERE (key_head IN ({placeholders(len(heads))}) OR key_head IS NULL) "
                f"AND key IN ({placeholders(len(chunk))})", [*heads, *chunk]))
        return found

    def add_aliases(self, rows: Sequence[tuple[str, int]]) -> int:
        """Insert (alias, leaf_index) rows; an alias already there keeps its leaf. Returns how many were new."""
        added = 0
        for alias, leaf in rows:
            cur = self.db.execute("INSERT INTO key_aliases (alias, leaf_index) VALUES (?, ?) "
                                  "ON CONFLICT (alias) DO NOTHING", (alias, leaf))
            added += max(cur.rowcount, 0)
        return added

    def progress(self, upto: int, stored_twice: int, without_body: int) -> None:
        self.db.execute("INSERT INTO key_state (name, value) VALUES ('rekeyed_upto', ?) "
                        "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (upto,))
        self.db.executemany("INSERT INTO key_state (name, value) VALUES (?, ?) "
                            "ON CONFLICT (name) DO UPDATE SET value = key_state.value + excluded.value",
                            [("stored_twice", stored_twice), ("without_body", without_body)])

    def finish(self) -> None:
        """Every entry has a current key (or an alias): forget the progress."""
        self.db.execute("DELETE FROM key_state")

    def aliases(self) -> Iterator[tuple[str, int]]:
        """(alias, leaf_index), sorted by alias."""
        if self.engine.has_table("key_aliases"):
            yield from ((str(a), int(leaf)) for a, leaf in self.db.execute(
                "SELECT alias, leaf_index FROM key_aliases ORDER BY alias"))

    def by_audit_id(self, audit_ids: Sequence[str]) -> list[AuditIdRow]:
        """The stored records of these auditIDs whose (auditID, stage) more than one record has —
        what the reuse check needs. The common case (none) reads the index of the auditIDs' heads
        only (store/heads.py), no row; the heads it finds shared are checked against the auditIDs."""
        head_of = {a: text_head(a) for a in sorted({a for a in audit_ids if a})}  # an MD5 each: once
        heads = sorted(set(head_of.values()))
        shared: set[int] = set()
        postgres = self.engine.dialect == "postgres"
        for i in range(0, len(heads), 500):
            chunk = heads[i:i + 500]
            if postgres:  # see _SHARED_PG
                shared.update(int(h) for (h,) in self.db.execute(_SHARED_PG, (chunk,)))
                continue
            shared.update(int(h) for (h,) in self.db.execute(
                f"SELECT audit_head FROM entries WHERE audit_head IN ({placeholders(len(chunk))}) "
                "GROUP BY audit_head, stage HAVING COUNT(*) > 1", chunk))
        candidates = [a for a, h in head_of.items() if h in shared]
        rows: list[AuditIdRow] = []
        for i in range(0, len(candidates), 500):
            chunk = candidates[i:i + 500]
            hs = sorted({head_of[a] for a in chunk})
            if postgres:
                rows.extend(AuditIdRow(*r) for r in self.db.execute(_ROWS_PG, (hs, chunk)))
                continue
            rows.extend(AuditIdRow(*r) for r in self.db.execute(
                "SELECT audit_id, stage, key, time, username, leaf_index FROM entries "
                f"WHERE audit_head IN ({placeholders(len(hs))}) AND audit_id IN ({placeholders(len(chunk))}) "
                "ORDER BY leaf_index",
                [*hs, *chunk]))
        stages = Counter((r.audit_id, r.stage) for r in rows)
        reused = {a for (a, _), n in stages.items() if n > 1}
        return [r for r in rows if r.audit_id in reused]


# PostgreSQL, for the reuse check's two reads: one index probe per head (a subplan, or a lateral join, on
# ``entries_audit_head``) whatever the planner estimates. ``audit_head IN (500 values)`` was planned as a
# sequential scan of ``entries`` (measured: 48 ms per 500 heads at 100,000 entries, estimated 72,596 rows
# for 503), four per 2,000-event batch and growing with the store: half of a Metadata ingest's time on
# PostgreSQL went there (bench/RESULTS.md "Twelfth session"). Spelled this way: 1.7 ms.
_SHARED_PG = ("SELECT u.h FROM unnest(?::bigint[]) AS u(h) WHERE EXISTS "
              "(SELECT 1 FROM entries e WHERE e.audit_head = u.h GROUP BY e.stage HAVING COUNT(*) > 1)")
_ROWS_PG = ("SELECT e.audit_id, e.stage, e.key, e.time, e.username, e.leaf_index FROM unnest(?::bigint[]) AS u(h) "
            "CROSS JOIN LATERAL (SELECT * FROM entries WHERE audit_head = u.h) e "
            "WHERE e.audit_id = ANY(?::text[]) ORDER BY e.leaf_index")
