"""Issue 11's contract: `store/` owns every SQL statement and every transaction. import-linter (in
`make test`) keeps sqlite3/psycopg out of every other package; this test keeps SQL text and the
store's raw-SQL back door (`kubetrail.store.testing`) out of them too, so a statement cannot reach a
database through a string handed to the store."""

from __future__ import annotations

import re
from pathlib import Path

import kubetrail

SRC = Path(kubetrail.__file__).parent
SQL = re.compile(r"\b(SELECT\s+(DISTINCT\s+)?[A-Za-z_*(]\w*[\s,(]|INSERT\s+(OR\s+\w+\s+)?INTO\s|UPDATE\s+\w+\s+SET\s|"
                 r"DELETE\s+FROM\s|(CREATE|DROP)\s+(UNIQUE\s+)?(TABLE|INDEX|TRIGGER|VIEW)\s|BEGIN\s+IMMEDIATE|"
                 r"PRAGMA\s+[a-z_]+\s*[=(;\"']|VACUUM\b(?!\s+\w+ing))")
# prose that names SQL on purpose (help texts), by file and the words around it
ALLOWED = {("cli/trail.py", "PRAGMA integrity_check and the schema")}


def outside_store() -> list[Path]:
    return [p for p in SRC.rglob("*.py") if "store" not in p.relative_to(SRC).parts[:1]]


def test_no_sql_text_outside_store() -> None:
    found = []
    for path in outside_store():
        rel = path.relative_to(SRC).as_posix()
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if SQL.search(line) and not any(rel == f and words in line for f, words in ALLOWED):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, "SQL outside kubetrail/store/ (give the store a method):\n" + "\n".join(found)


def test_the_raw_sql_door_is_for_tests_only() -> None:
    users = [p.relative_to(SRC).as_posix() for p in outside_store() if "store.testing" in p.read_text()]
    assert not users, users


def test_the_pattern_catches_what_it_must() -> None:
    """The check above can fail: each kind of statement it looks for is caught."""
    for stmt in ('conn.execute("SELECT COUNT(*) FROM entries")', "INSERT OR IGNORE INTO alerts (id) VALUES (?)",
                 "UPDATE alerts SET state = ?", "DELETE FROM outbox WHERE id = ?", "BEGIN IMMEDIATE",
                 "CREATE INDEX x ON entries (time)", 'execute("PRAGMA journal_mode=WAL")', "db.execute('VACUUM')"):
        assert SQL.search(stmt), stmt
    for prose in ("Select the sink to use", "vacuuming happens in the store", "update the alert's state"):
        assert not SQL.search(prose), prose
