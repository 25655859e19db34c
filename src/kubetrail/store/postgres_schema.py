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
from importlib import resources

from psycopg import Connection

from kubetrail.errors import StoreError
from kubetrail.store.sqlite_schema import check_version, migrations, statements
from kubetrail.trail.verify import Problem

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


def migrate(conn: Connection) -> None:
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
        for version, name, sql in known:
            if version in done:
                continue
            for stmt in statements(sql):
                conn.execute(stmt)  # type: ignore[call-overload]
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))


_INDEX = re.compile(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(\w+)\s+ON\s+(\w+)", re.I)
_DROP = re.compile(r"DROP\s+INDEX\s+(?:IF\s+EXISTS\s+)?(\w+)", re.I)


def deep_check(conn: Connection) -> list[Problem]:
    """``verify --deep`` on PostgreSQL: every index the migrations create exists, is valid, ready and
    whole (no partial or expression index hides a row from searches), no other index was added to a
    kubetrail table, and no trigger or rule rewrites rows. (Page-level damage is PostgreSQL's own
    business: data checksums, amcheck.)"""
    done = applied(conn)
    want: dict[str, str] = {}
    for version, _, sql in pg_migrations():
        if version in done:
            for stmt in statements(sql):
                if m := _INDEX.match(stmt):
                    want[m.group(1).lower()] = m.group(2).lower()
                elif m := _DROP.match(stmt):
                    want.pop(m.group(1).lower(), None)
    tables = set(want.values()) | {"entries", "trail_leaves", "trail_nodes", "trail_checkpoints"}
    rows = conn.execute(
        "SELECT c.relname, t.relname, i.indisvalid, i.indisready, i.indpred IS NOT NULL, i.indexprs IS NOT NULL, "
        "pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_class t ON t.oid = i.indrelid WHERE t.relnamespace = current_schema()::regnamespace").fetchall()
    problems = []
    have = set()
    for index, table, valid, ready, partial, expr, definition in rows:
        have.add(index)
        if table not in tables:
            continue
        if not (valid and ready):
            problems.append(Problem(0, "modified", f"index {index} on {table} is not valid"))
        if partial or expr:
            problems.append(Problem(0, "modified", f"index {index} is not what the migrations create: {definition}"))
        if index not in want and not index.endswith(("_pkey", "_key")):
            problems.append(Problem(0, "modified", f"unexpected index {index} on {table}: {definition}"))
    for index, table in sorted(want.items()):
        if index not in have:
            problems.append(Problem(0, "modified", f"index {index} on {table} is missing"))
    for name, table in conn.execute(
            "SELECT g.tgname, t.relname FROM pg_trigger g JOIN pg_class t ON t.oid = g.tgrelid "
            "WHERE NOT g.tgisinternal AND t.relnamespace = current_schema()::regnamespace "
            "UNION ALL SELECT r.rulename, r.tablename FROM pg_rules r WHERE r.schemaname = current_schema()"):
        problems.append(Problem(0, "modified", f"unexpected trigger {name} on {table} (migrations create none)"))
    return problems
