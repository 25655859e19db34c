"""``Engine.insert_rows`` (store/db.py): what ``INSERT`` does, by each engine's fastest way — SQLite's
``executemany``, PostgreSQL's ``COPY`` — values and types read back unchanged, and a row already there
fails the whole call inside the transaction, which then rolls back as one."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from kubetrail.store import open_store
from kubetrail.store.testing import execute as sql


def test_rows_go_in_as_an_insert_would_and_a_duplicate_fails(store_url: str) -> None:
    with open_store(store_url) as store:
        engine = store._engine  # noqa: SLF001 - the seam under test
        rows = [(0, 5, b"\x00" * 32), (1, 5, b"\xff\x01"), (0, 6, b"")]
        with store.transaction():
            engine.insert_rows("trail_nodes", ("level", "idx", "hash"), rows)
            engine.insert_rows("trail_nodes", ("level", "idx", "hash"), [])
        got = sorted((int(a), int(b), bytes(c)) for a, b, c in sql(store, "SELECT level, idx, hash FROM trail_nodes"))
        assert got == sorted(rows)
        with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)), store.transaction():
            engine.insert_rows("trail_nodes", ("level", "idx", "hash"), [(2, 0, b"new"), (0, 5, b"again")])
        assert sorted(int(b) for (b,) in sql(store, "SELECT idx FROM trail_nodes")) == [5, 5, 6]  # (2, 0) rolled back
