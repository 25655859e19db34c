"""The credential inventory's tables (migrations 0004, 0013), for ``kubetrail.credentials``.

Documents (``credentials.doc``) and aggregate statistics are JSON text owned by the credentials
package; here they are only kept and found. Uses are inserted with ``ON CONFLICT DO NOTHING`` so
"is this request new?" is answered by the database itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubetrail.store.db import Engine

TABLES = ("credentials", "credential_aggregates", "credential_uses", "credential_flags",
          "credential_admin_bindings", "credential_state")
_ID_COLUMNS = ("credential_id", "lookup", "subject")


_USE_COLUMNS = ("credential", "received", "request", "time", "leaf_index", "code", "link")
# A use is "in step" when its time (of the stage first seen) is at most WINDOW_NS after the request was
# received, as nearly all are; the others are indexed by time in credential_uses_outliers (migration
# 0015). The key orders a credential's uses by receive time, so an in-step use's time is within
# WINDOW_NS of its place in the key: ``uses`` reads the key in order and stops once no later row can
# come before what it has (the outliers come from their index). The predicate is spelled as the
# migration and PostgreSQL's catalogue spell it, so both planners use the partial index.
WINDOW_NS = 2_000_000_000
_OUTLIER = "(time < received) OR (time > (received + 2000000000))"
_ENTRY_FIELDS = ("SELECT leaf_index, audit_id, stage, verb, CASE WHEN subresource = '' THEN resource ELSE "
                 "resource || '/' || subresource END, namespace, name, source_ip, user_agent FROM entries "
                 "WHERE leaf_index IN ")
_PAGE = 512


class CredentialTables:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.db = engine.db

    def lock(self) -> None:
        """One inventory writer at a time (the consumer of each collector) until the transaction ends."""
        self.engine.lock("credentials")

    # -- documents ------------------------------------------------------------------------------
    def doc(self, cred_id: str) -> str | None:
        row = self.db.execute("SELECT doc FROM credentials WHERE id = ?", (cred_id,)).fetchone()
        return str(row[0]) if row else None

    def _ids(self, sql: str, params: Sequence[Any]) -> list[str]:
        return [str(r[0]) for r in self.db.execute(sql, params)]

    def ids_where(self, column: str, value: str) -> list[str]:
        if column not in _ID_COLUMNS:
            raise ValueError(f"credentials cannot be looked up by {column!r}")
        return self._ids(f"SELECT id FROM credentials WHERE {column} = ?", (value,))

    def ids_by_credential_id_ranked(self, credential_id: str) -> list[str]:
        """Accounted issuances first, then the oldest."""
        return self._ids("SELECT id FROM credentials WHERE credential_id = ? ORDER BY accounted DESC, created_at",
                         (credential_id,))

    def ids_subject_prefix(self, prefix: str) -> list[str]:
        return self._ids("SELECT id FROM credentials WHERE subject LIKE ?", (prefix.replace("%", "") + "%",))

    def ids_issued_without_certificate(self, subject: str) -> list[str]:
        return self._ids("SELECT id FROM credentials WHERE kind = 'cert' AND accounted = 1 AND credential_id = '' "
                         "AND subject IN (?, '') ORDER BY created_at DESC", (subject,))

    def subjects(self) -> set[str]:
        return {str(r[0]) for r in self.db.execute("SELECT DISTINCT subject FROM credentials")}

    def upsert(self, rows: Sequence[Sequence[Any]]) -> None:
        """(id, kind, credential_id, subject, lookup, accounted, created_at, expires_at, doc, updated_ns)."""
        self.db.executemany(
            "INSERT INTO credentials (id, kind, credential_id, subject, lookup, accounted, created_at, expires_at, doc, "
            "updated_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, "
            "credential_id = excluded.credential_id, subject = excluded.subject, lookup = excluded.lookup, "
            "accounted = excluded.accounted, created_at = excluded.created_at, expires_at = excluded.expires_at, "
            "doc = excluded.doc, updated_ns = excluded.updated_ns", rows)

    def delete(self, cred_id: str) -> None:
        for table, col in (("credentials", "id"), ("credential_aggregates", "credential"),
                           ("credential_uses", "credential"), ("credential_flags", "credential")):
            self.db.execute(f"DELETE FROM {table} WHERE {col} = ?", (cred_id,))

    def clear(self) -> None:
        for table in TABLES:
            self.db.execute(f"DELETE FROM {table}")

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM credentials").fetchone()[0])

    # -- uses and aggregates --------------------------------------------------------------------
    def move_uses(self, src: str, into: str) -> None:
        """Give ``src``'s uses to ``into``; a request ``into`` already has stays with ``src`` (dropped with it)."""
        self.db.execute("UPDATE credential_uses SET credential = ? WHERE credential = ? AND NOT EXISTS "
                        "(SELECT 1 FROM credential_uses o WHERE o.credential = ? AND o.received = credential_uses.received "
                        "AND o.request = credential_uses.request)", (into, src, into))

    def aggregate(self, cred_id: str) -> tuple[Any, ...] | None:
        row = self.db.execute("SELECT uses, exact_uses, probable_uses, denied, first_used, last_used, stats "
                              "FROM credential_aggregates WHERE credential = ?", (cred_id,)).fetchone()
        return tuple(row) if row else None

    def upsert_aggregates(self, rows: Sequence[Sequence[Any]]) -> None:
        """(credential, uses, exact_uses, probable_uses, denied, first_used, last_used, stats)."""
        self.db.executemany(
            "INSERT INTO credential_aggregates (credential, uses, exact_uses, probable_uses, denied, first_used, "
            "last_used, stats) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (credential) DO UPDATE SET "
            "uses = excluded.uses, exact_uses = excluded.exact_uses, probable_uses = excluded.probable_uses, "
            "denied = excluded.denied, first_used = excluded.first_used, last_used = excluded.last_used, "
            "stats = excluded.stats", rows)

    def has_use(self, cred_id: str, received: int, request: str) -> bool:
        """Whether the credential has this request stored (one probe of the key)."""
        return self.db.execute("SELECT 1 FROM credential_uses WHERE credential = ? AND received = ? AND request = ?",
                               (cred_id, received, request)).fetchone() is not None

    def add_uses(self, rows: Sequence[Sequence[Any]]) -> None:
        """Uses the ledger knows are new (``Ledger.add_use``), at once (``Engine.insert_new_rows``: the
        conflict clause stays, as a retried step may bring them again)."""
        self.engine.insert_new_rows("credential_uses", _USE_COLUMNS, rows, ("credential", "received", "request"))

    def newest_use(self, cred_id: str) -> int | None:
        """The key's second column after its first: one index seek."""
        row = self.db.execute("SELECT MAX(received) FROM credential_uses WHERE credential = ?", (cred_id,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def set_use_code(self, cred_id: str, received: int, request: str, code: int) -> bool:
        """Fill in a use's response code once it is known; True if it was unknown."""
        cur = self.db.execute("UPDATE credential_uses SET code = ? WHERE credential = ? AND received = ? AND request = ? "
                              "AND code IS NULL", (code, cred_id, received, request))
        return cur.rowcount > 0

    def use_histogram(self, cred_id: str, since: int, bucket_ns: int) -> list[tuple[int, int, int]]:
        """(bucket start ns, uses, denied uses) per ``bucket_ns`` from ``since``, buckets without uses left out."""
        b = max(int(bucket_ns), 1)
        return [(int(t), int(n), int(d or 0)) for t, n, d in self.db.execute(
            "SELECT ? + ((time - ?) / ?) * ?, COUNT(*), SUM(CASE WHEN code >= 400 THEN 1 ELSE 0 END) FROM credential_uses "
            "WHERE credential = ? AND time >= ? GROUP BY 1 ORDER BY 1", (since, since, b, b, cred_id, since))]

    def uses(self, cred_id: str, limit: int, newest_first: bool = False) -> list[tuple[Any, ...]]:
        """(time, audit_id, stage, leaf_index, code, verb, resource, namespace, name, source_ip, user_agent,
        link) of the first ``limit`` uses by (time, leaf index), or the last ones newest first; what the
        use's record said is read from its entry."""
        if limit <= 0:
            return []
        desc = "DESC" if newest_first else "ASC"
        found = [tuple(r) for r in self.db.execute(
            f"SELECT time, leaf_index, code, link FROM credential_uses WHERE credential = ? AND ({_OUTLIER}) "
            f"ORDER BY time {desc}, leaf_index {desc} LIMIT ?", (cred_id, limit))]
        found += self._in_step(cred_id, limit, newest_first)
        found.sort(key=lambda u: (u[0], -1 if u[1] is None else u[1]), reverse=newest_first)
        return self._with_entries(found[:limit])

    def _in_step(self, cred_id: str, limit: int, newest_first: bool) -> list[tuple[Any, ...]]:
        """The first (last) ``limit`` in-step uses by time, reading the key in growing pages from the
        start (end) and stopping at the first receive time no use of which can still make the cut."""
        best: list[tuple[Any, ...]] = []
        after: tuple[int, str] | None = None
        op, desc = (">", "ASC") if not newest_first else ("<", "DESC")
        page = limit + 32
        while True:
            cond = "" if after is None else f" AND (received, request) {op} (?, ?)"
            rows = self.db.execute(
                f"SELECT received, request, time, leaf_index, code, link FROM credential_uses WHERE credential = ?"
                f"{cond} ORDER BY received {desc}, request {desc} LIMIT ?",
                (cred_id, *(after or ()), page)).fetchall()
            for received, _, t, leaf, code, link in rows:
                if received <= t <= received + WINDOW_NS:
                    best.append((t, leaf, code, link))
            if len(rows) < page:
                break
            page = min(page * 2, 8192)
            after = (rows[-1][0], rows[-1][1])
            if len(best) >= limit:
                best.sort(key=lambda u: (u[0], -1 if u[1] is None else u[1]), reverse=newest_first)
                del best[limit:]
                edge = best[-1][0]
                # uses received later (earlier) than this are timed after (before) the edge
                if (not newest_first and after[0] > edge) or (newest_first and after[0] + WINDOW_NS < edge):
                    break
        return best

    def _with_entries(self, uses: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        fields: dict[int, tuple[Any, ...]] = {}
        leaves = sorted({u[1] for u in uses if u[1] is not None})
        for i in range(0, len(leaves), _PAGE):
            chunk = leaves[i:i + _PAGE]
            for r in self.db.execute(_ENTRY_FIELDS + f"({', '.join('?' * len(chunk))})", chunk):
                fields[int(r[0])] = tuple(r[1:])
        blank = ("",) * 8
        out = []
        for t, leaf, code, link in uses:
            a, st, v, res, ns, n, ip, ua = fields.get(leaf, blank) if leaf is not None else blank
            out.append((t, a, st, leaf, code, v, res, ns, n, ip, ua, link))
        return out

    # -- flags ----------------------------------------------------------------------------------
    def flags(self, cred_id: str) -> set[str]:
        return {str(r[0]) for r in self.db.execute("SELECT flag FROM credential_flags WHERE credential = ?",
                                                   (cred_id,))}

    def add_flag(self, row: Sequence[Any]) -> bool:
        """(credential, flag, priority, explanation, time, key, audit_id, stage, leaf_index, alerted); False if
        present. ``alerted``: 0 = to be alerted, 2 = a standing fact that raises no alert."""
        cur = self.db.execute(
            "INSERT INTO credential_flags (credential, flag, priority, explanation, time, key, audit_id, stage, "
            "leaf_index, alerted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (credential, flag) DO NOTHING", row)
        return cur.rowcount > 0

    def fact_flags(self, cred_id: str) -> set[str]:
        """The flags of one credential kept as facts (no alert)."""
        return {str(r[0]) for r in self.db.execute(
            "SELECT flag FROM credential_flags WHERE credential = ? AND alerted = 2", (cred_id,))}

    def promote_flag(self, cred_id: str, flag: str) -> bool:
        """A fact that now means an attack (its credential's creation was read late): alert it."""
        return self.db.execute("UPDATE credential_flags SET alerted = 0 WHERE credential = ? AND flag = ? "
                               "AND alerted = 2", (cred_id, flag)).rowcount > 0

    def flag_rows(self, cred_id: str) -> list[tuple[Any, ...]]:
        """(flag, priority, explanation, time, audit_id, leaf_index, alert_id, alerted) of one credential."""
        return [tuple(r) for r in self.db.execute(
            "SELECT flag, priority, explanation, time, audit_id, leaf_index, alert_id, alerted FROM credential_flags "
            "WHERE credential = ?", (cred_id,))]

    def flag_summary(self) -> list[tuple[str, str, int, int]]:
        """(flag, priority, alerted, how many credentials) over the whole inventory."""
        return [(str(f), str(p), int(a), int(n)) for f, p, a, n in self.db.execute(
            "SELECT flag, priority, alerted, COUNT(*) FROM credential_flags GROUP BY flag, priority, alerted "
            "ORDER BY flag, priority, alerted")]

    def unalerted_flags(self) -> list[tuple[Any, ...]]:
        """(credential, flag, priority, explanation, time, key, audit_id, stage, leaf_index, kind, subject,
        credential_id) of flags no alert was raised for yet, in time order."""
        return [tuple(r) for r in self.db.execute(
            "SELECT f.credential, f.flag, f.priority, f.explanation, f.time, f.key, f.audit_id, f.stage, f.leaf_index, "
            "c.kind, c.subject, c.credential_id FROM credential_flags f JOIN credentials c ON c.id = f.credential "
            "WHERE f.alerted = 0 ORDER BY f.time, f.credential, f.flag")]

    def mark_alerted(self, rows: Sequence[tuple[int | None, str, str]]) -> None:
        """(alert id, credential, flag) rows."""
        self.db.executemany("UPDATE credential_flags SET alerted = 1, alert_id = ? WHERE credential = ? AND flag = ?",
                            rows)

    # -- cluster-admin bindings -----------------------------------------------------------------
    def set_binding(self, binding: str, rows: Sequence[Sequence[Any]]) -> None:
        """Replace a binding's subjects: (binding, subject, key, audit_id, leaf_index, time) rows."""
        self.db.execute("DELETE FROM credential_admin_bindings WHERE binding = ?", (binding,))
        self.db.executemany(
            "INSERT INTO credential_admin_bindings (binding, subject, key, audit_id, leaf_index, time) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows)

    def bindings(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.db.execute("SELECT binding, subject, key, audit_id, leaf_index, time "
                                                  "FROM credential_admin_bindings ORDER BY time")]

    # -- consumer state -------------------------------------------------------------------------
    def state(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM credential_state WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else None

    def set_state(self, name: str, value: str) -> None:
        self.db.execute("INSERT INTO credential_state (name, value) VALUES (?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))

    # -- the read side (``creds list``/``show``) ------------------------------------------------
    def listing(self, kind: str | None, unaccounted: bool) -> list[tuple[Any, ...]]:
        """(doc, uses, exact_uses, probable_uses, denied, first_used, last_used, stats) per credential."""
        sql = ("SELECT c.doc, a.uses, a.exact_uses, a.probable_uses, a.denied, a.first_used, a.last_used, a.stats "
               "FROM credentials c LEFT JOIN credential_aggregates a ON a.credential = c.id")
        where: list[str] = []
        params: list[Any] = []
        if kind:
            where.append("c.kind = ?")
            params.append(kind)
        if unaccounted:
            where.append("c.accounted = 0")
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [tuple(r) for r in self.db.execute(sql, params)]

    def find(self, ident: str) -> list[str]:
        """Documents whose credential id, fingerprint, JTI or id prefix is ``ident``."""
        return [str(r[0]) for r in self.db.execute(
            "SELECT doc FROM credentials WHERE credential_id = ? OR credential_id = ? OR credential_id = ? "
            "OR id LIKE ? OR credential_id LIKE ?",
            (ident, f"X509SHA256={ident.lower()}", f"JTI={ident}", ident + "%", f"X509SHA256={ident.lower()}%"))]
