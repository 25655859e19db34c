"""PostgreSQL schema: the same numbered migrations as SQLite, with a twin where the SQL differs.

Version N runs ``migrations/postgres/N_*.sql`` when that twin exists, else the shared
``migrations/N_*.sql`` as written (migration 0001 makes ``BLOB`` a domain over ``bytea``, so a
shared migration that keeps to common SQL needs no twin). Migrations run under a transaction-level
advisory lock, so collectors starting together never apply one twice.

Everything lives in the connection's ``current_schema()`` (set ``options=-csearch_path=NAME`` in
the URL to keep several stores in one database); advisory lock keys include that schema name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources
from typing import NamedTuple

from psycopg import Connection

from kubetrail.errors import StoreError
from kubetrail.store import heads
from kubetrail.store.rows import LOG_COLUMNS, log_meta
from kubetrail.store.sqlite_schema import check_version, migrations, notice, statements, upgrade_notes
from kubetrail.trail.protocols import Problem

SCHEMA_MIGRATIONS_DDL = ("CREATE TABLE IF NOT EXISTS schema_migrations "
                         "(version BIGINT PRIMARY KEY, name TEXT NOT NULL)")


def lock_key(name: str) -> str:
    """SQL for the advisory lock key of ``name`` in the current schema."""
    return f"hashtextextended(current_schema() || '/kubetrail/{name}', 0)"


def pg_migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) for PostgreSQL: each shared migration, or its twin."""
    twins = {}
    for p in resources.files("kubetrail.store.migrations").joinpath("postgres").iterdir():
        if p.name.endswith(".sql"):
            twins[int(p.name.split("_", 1)[0])] = (p.name, p.read_text())
    out = []
    for version, name, sql in migrations():
        twin = twins.pop(version, None)
        out.append((version, f"postgres/{twin[0]}", twin[1]) if twin else (version, name, sql))
    if twins:
        raise StoreError(f"PostgreSQL migrations without a shared migration: {sorted(twins)}")
    return out


def applied(conn: Connection) -> set[int]:
    if conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:  # type: ignore[index]
        return set()
    return {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")}


def migrate(conn: Connection, report: Callable[[str], None] = notice) -> None:
    """As ``sqlite_schema.migrate``, under an advisory lock; an upgrade of a store with entries is reported."""
    known = pg_migrations()
    done = applied(conn)
    check_version(done)
    if all(v in done for v, _, _ in known):
        return
    with conn.transaction():
        conn.execute(f"SELECT pg_advisory_xact_lock({lock_key('migrate')})")
        conn.execute(SCHEMA_MIGRATIONS_DDL)
        done = applied(conn)
        check_version(done)
        note = upgrade_notes(_entries(conn) if done else 0, report)
        for version, name, sql in known:
            if version in done:
                continue
            note(name)
            for stmt in statements(sql):
                conn.execute(stmt)  # type: ignore[call-overload]
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
    note(None)


def _entries(conn: Connection) -> int:
    """How many entries the store holds (leaf indexes are contiguous from 0)."""
    if conn.execute("SELECT to_regclass('entries')").fetchone()[0] is None:  # type: ignore[index]
        return 0
    return int(conn.execute("SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM entries").fetchone()[0])  # type: ignore[index]


_INDEX = re.compile(r"CREATE\s+(UNIQUE\s+)?INDEX\s+(\w+)\s+ON\s+(\w+)\s*\(([^)]*)\)\s*(?:WHERE\s+(.*?))?\s*;?\s*$",
                    re.I | re.S)
_DROP = re.compile(r"DROP\s+INDEX\s+(?:IF\s+EXISTS\s+)?(\w+)", re.I)


class IndexDef(NamedTuple):
    table: str
    unique: bool
    columns: tuple[str, ...]
    predicate: str  # canonical (``canonical_predicate``); "" = a whole index


def canonical_predicate(text: str | None) -> str:
    """A partial index's WHERE as comparable text: PostgreSQL prints ``(workload <> ''::text)`` for a
    migration's ``workload <> ''``; casts, quotes, case, spacing and enclosing parentheses go. Anything a
    tamperer adds (``AND leaf_index <> 77``) stays, so the two differ."""
    if not text:
        return ""
    s = re.sub(r"::[a-z_ ]+?(?=[\s)]|$)", "", text.lower().replace('"', ""))
    s = re.sub(r"\s+", " ", s).strip()
    while s.startswith("(") and s.endswith(")") and _balanced(s[1:-1]):
        s = s[1:-1].strip()
    return s


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def expected_indexes(conn: Connection) -> dict[str, IndexDef]:
    """Every index the applied migrations leave, as they define it."""
    done = applied(conn)
    want: dict[str, IndexDef] = {}
    for version, _, sql in pg_migrations():
        if version in done:
            for stmt in statements(sql):
                if m := _INDEX.match(stmt.strip()):
                    cols = tuple(c.strip().lower().replace('"', "") for c in m.group(4).split(","))
                    want[m.group(2).lower()] = IndexDef(m.group(3).lower(), bool(m.group(1)), cols,
                                                        canonical_predicate(m.group(5)))
                elif m := _DROP.match(stmt.strip()):
                    want.pop(m.group(1).lower(), None)
    return want


def deep_check(conn: Connection) -> list[Problem]:
    """``verify --deep`` on PostgreSQL: every index the migrations create exists, is valid and ready,
    and is what the migration defines — its columns, uniqueness and partial predicate (a doctored
    predicate hides rows from searches), no expression; no other index was added to a kubetrail
    table; no trigger or rule rewrites rows; log lines' indexed copies match their leaves. (Page-level
    damage is PostgreSQL's own business: data checksums, amcheck.)"""
    want = expected_indexes(conn)
    tables = {d.table for d in want.values()} | {"entries", "trail_leaves", "trail_nodes", "trail_checkpoints"}
    rows = conn.execute(
        "SELECT c.relname, t.relname, i.indisvalid, i.indisready, i.indisunique, i.indexprs IS NOT NULL, "
        "pg_get_expr(i.indpred, i.indrelid), pg_get_indexdef(i.indexrelid), "
        "ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n) "
        "      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n) "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_class t ON t.oid = i.indrelid WHERE t.relnamespace = current_schema()::regnamespace").fetchall()
    problems = []
    have = set()
    for index, table, valid, ready, unique, expr, pred, definition, cols in rows:
        have.add(index)
        if table not in tables:
            continue
        if not (valid and ready):
            problems.append(Problem(0, "modified", f"index {index} on {table} is not valid"))
        if index in want:
            d = want[index]
            if (expr or table != d.table or unique != d.unique or tuple(cols) != d.columns
                    or canonical_predicate(pred) != d.predicate):
                problems.append(Problem(0, "modified", f"index {index} is not what the migrations create: {definition}"))
        elif index.endswith(("_pkey", "_key")):  # a constraint's index: whole, never partial
            if expr or pred:
                problems.append(Problem(0, "modified", f"index {index} is not what the migrations create: {definition}"))
        else:
            problems.append(Problem(0, "modified", f"unexpected index {index} on {table}: {definition}"))
    for index, d in sorted(want.items()):
        if index not in have:
            problems.append(Problem(0, "modified", f"index {index} on {d.table} is missing"))
    for name, table in conn.execute(
            "SELECT g.tgname, t.relname FROM pg_trigger g JOIN pg_class t ON t.oid = g.tgrelid "
            "WHERE NOT g.tgisinternal AND t.relnamespace = current_schema()::regnamespace "
            "UNION ALL SELECT r.rulename, r.tablename FROM pg_rules r WHERE r.schemaname = current_schema()"):
        problems.append(Problem(0, "modified", f"unexpected trigger {name} on {table} (migrations create none)"))
    return problems + _head_problems(conn) + _log_copy_problems(conn)


def _entries_has(conn: Connection, column: str) -> bool:
    """Whether ``entries`` exists with a column a later migration added."""
    return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = "
                             "current_schema() AND table_name = 'entries' AND column_name = %s)",
                             (column,)).fetchone()[0])  # type: ignore[index]


def _head_problems(conn: Connection) -> list[Problem]:
    """Entries whose key or auditID head (migration 0016) is not their own (as sqlite_deep.head_problems)."""
    if not _entries_has(conn, "key_head"):
        return []

    def held(head: int) -> bool:
        return conn.execute("SELECT 1 FROM entries WHERE key_head = %s LIMIT 1", (head,)).fetchone() is not None

    with conn.cursor() as cur:
        found = heads.head_problems(cur.stream(heads.HEAD_ROWS), held)  # type: ignore[arg-type]
    return [Problem(idx, "modified", what) for idx, what in found]


def _log_copy_problems(conn: Connection) -> list[Problem]:
    """Log lines whose indexed copies (migration 0009) differ from their leaf-covered ``meta`` (as
    sqlite_deep.log_copy_problems: such a row would be hidden from ``kubetrail logs`` filters)."""
    if not _entries_has(conn, "workload"):
        return []
    out = []
    with conn.cursor() as cur:
        for idx, meta, *copies in cur.stream(
                f"SELECT leaf_index, meta, {', '.join(LOG_COLUMNS)} FROM entries "  # type: ignore[arg-type]
                "WHERE kind IN ('container', 'node', 'k8s_event') ORDER BY leaf_index"):
            try:
                m, _ = log_meta(bytes(meta))
                want = [getattr(m, c) for c in LOG_COLUMNS]
            except Exception:  # noqa: BLE001 - a damaged meta is the leaf check's finding, not this one's
                continue
            if list(copies) != want:
                out.append(Problem(idx, "modified", "the indexed copies of its log metadata differ from the leaf"))
    return out
