"""``kubetrail verify --deep``: the database itself, beyond what the leaves commit to.

The leaves cover every row, but ``kubetrail query`` reads through indexes. An index rebuilt as a
partial index (and its definition text then restored through ``PRAGMA writable_schema``) hides a
row from searches while every leaf still verifies. Two checks catch that kind of doctoring:

* ``PRAGMA integrity_check``: every index must hold exactly the rows of its table (plus the b-tree
  and page checks). A message naming a row of ``entries`` is reported at that row's leaf index.
* the schema: every table, index, view and trigger in ``sqlite_schema`` must be exactly what the
  applied migrations create, nothing missing, changed or added.
* the key and auditID heads (migration 0016, store/heads.py) must be the key's and the auditID's.
* log lines: the indexed copies of their metadata (``node``, ``workload``… columns, migration 0009)
  must equal what the leaf-covered ``meta`` says.

Every problem is reported as **modified** (index 0 when no row can be named). The cost is a read of
the whole file (see docs/trail.md).
"""

from __future__ import annotations

import re
import sqlite3

from kubetrail.store import heads
from kubetrail.store.rows import LOG_COLUMNS, log_meta
from kubetrail.store.sqlite_schema import SCHEMA_MIGRATIONS_DDL, migrations, statements
from kubetrail.trail.protocols import Problem

MAX_MESSAGES = 100
_ROW = re.compile(r"row (\d+) missing from index (\S+)")
_INDEX = re.compile(r"in index (\S+)")


def deep_check(conn: sqlite3.Connection) -> list[Problem]:
    """Integrity and schema problems of the store, each as a ``modified`` Problem."""
    problems = []
    try:
        messages = [str(m) for (m,) in conn.execute(f"PRAGMA integrity_check({MAX_MESSAGES})")]
    except sqlite3.DatabaseError as exc:
        messages = [str(exc)]
    messages = [m for m in messages if m != "ok"]
    named: dict[str, int] = {}  # index name -> smallest leaf index a message names in it
    for m in messages:
        row = _ROW.search(m)
        if row is not None:
            at = _index_of(conn, m)
            named[row.group(2)] = min(at, named.get(row.group(2), at))
    for m in messages:
        index = _INDEX.search(m)
        at = named.get(index.group(1), 0) if index is not None else 0  # "wrong # of entries in index X"
        problems.append(Problem(_index_of(conn, m) if _ROW.search(m) else at, "modified", f"integrity_check: {m}"))
    try:
        problems += schema_problems(conn)
    except sqlite3.DatabaseError as exc:
        problems.append(Problem(0, "modified", f"the schema cannot be read: {exc}"))
    try:
        problems += head_problems(conn)
    except sqlite3.DatabaseError as exc:
        problems.append(Problem(0, "modified", f"the key and auditID heads cannot be read: {exc}"))
    try:
        problems += log_copy_problems(conn)
    except sqlite3.DatabaseError as exc:
        problems.append(Problem(0, "modified", f"the log-line columns cannot be read: {exc}"))
    return problems


def _entries_has(conn: sqlite3.Connection, column: str) -> bool:
    """Whether ``entries`` has a column a later migration added."""
    return column in {r[1] for r in conn.execute("PRAGMA table_info(entries)")}


def head_problems(conn: sqlite3.Connection) -> list[Problem]:
    """Entries whose integer key or auditID head (migration 0016, store/heads.py) is not their own."""
    if not _entries_has(conn, "key_head"):
        return []

    def held(head: int) -> bool:
        return conn.execute("SELECT 1 FROM entries WHERE key_head = ?", (head,)).fetchone() is not None

    return [Problem(idx, "modified", what) for idx, what in heads.head_problems(conn.execute(heads.HEAD_ROWS), held)]


def log_copy_problems(conn: sqlite3.Connection) -> list[Problem]:
    """Log lines whose indexed copies (migration 0009) differ from their leaf-covered ``meta``: such a
    row would be hidden from ``kubetrail logs`` filters (never shown wrongly: logs re-checks meta)."""
    if not _entries_has(conn, "workload"):
        return []
    cols = ", ".join(LOG_COLUMNS)
    out = []
    for idx, meta, *copies in conn.execute(
            f"SELECT leaf_index, meta, {cols} FROM entries WHERE kind IN ('container', 'node', 'k8s_event') "
            "ORDER BY leaf_index"):
        try:
            m, _ = log_meta(bytes(meta))
            want = [getattr(m, c) for c in LOG_COLUMNS]
        except Exception:  # noqa: BLE001 - a damaged meta is the leaf check's finding, not this one's
            continue
        if list(copies) != want:
            out.append(Problem(idx, "modified", "the indexed copies of its log metadata differ from the leaf"))
    return out


def _index_of(conn: sqlite3.Connection, message: str) -> int:
    """The leaf index of the row an integrity message names (its rowid), 0 if it names none."""
    m = _ROW.search(message)
    if m is None:
        return 0
    try:
        row = conn.execute("SELECT tbl_name FROM sqlite_schema WHERE type = 'index' AND name = ?",
                           (m.group(2),)).fetchone()
        table = row[0] if row else ""
        if table == "entries":
            found = conn.execute("SELECT leaf_index FROM entries WHERE rowid = ?", (int(m.group(1)),)).fetchone()
            return int(found[0]) if found else 0
        if table == "trail_leaves":
            return int(m.group(1))  # idx is the rowid
    except (sqlite3.DatabaseError, ValueError, OverflowError):
        pass
    return 0


def _schema(conn: sqlite3.Connection) -> dict[tuple[str, str], str | None]:
    return {(str(t), str(n)): s for t, n, s in conn.execute("SELECT type, name, sql FROM sqlite_schema")}


def schema_problems(conn: sqlite3.Connection) -> list[Problem]:
    """Compare ``sqlite_schema`` with a fresh in-memory database built from the applied migrations."""
    applied = {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")}
    ref = sqlite3.connect(":memory:")
    heads.register(ref)
    try:
        ref.execute(SCHEMA_MIGRATIONS_DDL)
        for version, _name, sql in migrations():
            if version in applied:
                for stmt in statements(sql):
                    ref.execute(stmt)
        want = _schema(ref)
    finally:
        ref.close()
    have = _schema(conn)
    problems = []
    for (kind, name), sql in sorted(want.items()):
        if (kind, name) not in have:
            problems.append(Problem(0, "modified", f"schema: {kind} {name} is missing"))
        elif have[(kind, name)] != sql:
            problems.append(Problem(0, "modified", f"schema: {kind} {name} is not what the migrations create: "
                                                   f"{have[(kind, name)]!r}"))
    for kind, name in sorted(set(have) - set(want)):
        if name != "sqlite_stat1":  # written by ANALYZE, harmless
            problems.append(Problem(0, "modified", f"schema: unexpected {kind} {name}: {have[(kind, name)]!r}"))
    return problems
