"""Lets the trail tests import the RFC transcription that sits next to them; ``trail`` is a writable
copy of the golden trail (scripts/make_golden_trail.py) for the tamper tests, on each engine: the
SQLite file itself, or its rows copied into a fresh PostgreSQL schema (``KUBETRAIL_STORE`` then
points every command at it, and ``db(trail)`` in test_tamper.py opens that schema)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

GOLDEN = Path(__file__).parents[2] / "data" / "trail"


def copy_golden(tmp_path: Path) -> Path:
    shutil.copytree(GOLDEN, tmp_path / "t")
    for p in (tmp_path / "t").rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return tmp_path / "t"


def golden_to_postgres(sqlite_path: Path, url: str) -> None:
    """The golden rows in PostgreSQL at the golden store's schema version (later migrations then run
    on them at the first writing open, as they would on the SQLite file)."""
    import psycopg

    from kubetrail.store.postgres_schema import SCHEMA_MIGRATIONS_DDL, pg_migrations
    from kubetrail.store.sqlite_schema import statements

    src = sqlite3.connect(sqlite_path)
    versions = {v for (v,) in src.execute("SELECT version FROM schema_migrations")}
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(SCHEMA_MIGRATIONS_DDL)
        for version, name, sql in pg_migrations():
            if version in versions:
                for stmt in statements(sql):
                    pg.execute(stmt)
                pg.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
        tables = [t for (t,) in src.execute("SELECT name FROM sqlite_schema WHERE type = 'table' "
                                            "AND name != 'schema_migrations'")]
        for table in tables:
            cur = src.execute(f"SELECT * FROM {table}")
            cols = [d[0] for d in cur.description]
            rows = cur.fetchall()
            if rows:
                with pg.cursor().copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            if "id" in cols and rows:
                seq = pg.execute("SELECT pg_get_serial_sequence(%s, 'id')", (table,)).fetchone()[0]
                if seq:
                    pg.execute("SELECT setval(%s, (SELECT MAX(id) FROM " + table + "))", (seq,))
    src.close()


@pytest.fixture(params=["sqlite", "postgres"])
def trail(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from rawdb import OPEN

    t = copy_golden(tmp_path)
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_server").url()
        golden_to_postgres(t / "data" / "kubetrail.db", url)
        os.remove(t / "data" / "kubetrail.db")  # nothing may quietly fall back to the file
        monkeypatch.setenv("KUBETRAIL_STORE", url)
    yield t
    while OPEN:
        OPEN.pop().close()
