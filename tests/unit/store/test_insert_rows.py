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


USES = ("credential", "received", "request", "time", "leaf_index", "code", "link")
KEY = ("credential", "received", "request")


def _uses(n: int, first: int = 0, code: int | None = 200) -> list[tuple[object, ...]]:
    return [("c1", 1_000 + i, f"req-{i}", 2_000 + i, i, code, "exact") for i in range(first, first + n)]


def _stored_uses(store: object) -> dict[tuple[str, int, str], tuple[object, ...]]:
    return {(str(c), int(r), str(q)): (int(t), int(x), code, str(link)) for c, r, q, t, x, code, link in sql(
        store, "SELECT credential, received, request, time, leaf_index, code, link FROM credential_uses")}


@pytest.mark.parametrize("n", [3, 500])  # below COPY_MIN_ROWS (executemany) and above it (PostgreSQL: COPY)
def test_new_rows_go_in_and_stored_keys_are_skipped(store_url: str, n: int) -> None:
    """As ``INSERT ... ON CONFLICT (key) DO NOTHING`` row by row: a row whose key is stored is skipped and
    leaves the stored row as it was; the rest go in with every value. Called twice in one transaction, the
    first call's rows never come back with the second (a merge may have moved them in between); after a
    rollback (which takes a temporary table made inside it along) it still works."""
    with open_store(store_url) as store:
        engine = store._engine  # noqa: SLF001 - the seam under test
        with store.transaction():
            engine.insert_new_rows("credential_uses", USES, _uses(n), KEY)
            engine.insert_new_rows("credential_uses", USES, _uses(n, first=n // 2, code=None), KEY)
            engine.insert_new_rows("credential_uses", USES, [], KEY)
        got = _stored_uses(store)
        assert len(got) == n + n // 2
        assert got[("c1", 1_000, "req-0")] == (2_000, 0, 200, "exact")
        assert got[("c1", 1_000 + n - 1, f"req-{n - 1}")][2] == 200  # stored first: kept as it was
        assert got[("c1", 1_000 + n, f"req-{n}")] == (2_000 + n, n, None, "exact")  # new in the second call

        with store.transaction():
            engine.insert_new_rows("credential_uses", USES, _uses(n, first=5 * n), KEY)
            sql(store, "DELETE FROM credential_uses WHERE received >= ?", (1_000 + 5 * n,))
            engine.insert_new_rows("credential_uses", USES, _uses(n, first=9 * n), KEY)
        assert len(_stored_uses(store)) == 2 * n + n // 2  # the deleted rows stay deleted

        with pytest.raises(RuntimeError), store.transaction():
            engine.insert_new_rows("credential_uses", USES, _uses(n, first=10 * n), KEY)
            raise RuntimeError("the step fails")
        assert len(_stored_uses(store)) == 2 * n + n // 2  # rolled back
        with store.transaction():
            engine.insert_new_rows("credential_uses", USES, _uses(n, first=10 * n), KEY)
        assert len(_stored_uses(store)) == 3 * n + n // 2


def test_new_rows_outside_a_transaction(store_url: str) -> None:
    """Without a transaction each statement commits on its own: the rows still go in (not through a
    temporary table emptied at each commit)."""
    with open_store(store_url) as store:
        store._engine.insert_new_rows("credential_uses", USES, _uses(200), KEY)  # noqa: SLF001
        assert len(_stored_uses(store)) == 200


def test_a_role_without_temporary_tables_goes_row_by_row(postgres_server: object) -> None:
    """A hardened database whose owner revoked TEMPORARY from PUBLIC: the COPY path cannot make its
    temporary table, and must not fail the transaction it is in (the credential consumer's step would
    fail and be retried for ever); the rows go in one by one instead."""
    admin = postgres_server.admin_url  # type: ignore[attr-defined]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS hardened")
        conn.execute("CREATE DATABASE hardened")
        conn.execute("DROP ROLE IF EXISTS collector")
        conn.execute("CREATE ROLE collector LOGIN")
        conn.execute("REVOKE TEMPORARY ON DATABASE hardened FROM PUBLIC")
    with psycopg.connect(admin.replace("/postgres?", "/hardened?"), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA kt AUTHORIZATION collector")
    url = admin.replace("kubetrail@/postgres?", "collector@/hardened?") + "&options=-csearch_path%3Dkt"
    with psycopg.connect(url) as probe, pytest.raises(psycopg.errors.InsufficientPrivilege):
        probe.execute("CREATE TEMPORARY TABLE t (x int)")
    with open_store(url) as store:
        with store.transaction():
            store._engine.insert_new_rows("credential_uses", USES, _uses(200), KEY)  # noqa: SLF001
            store._engine.insert_new_rows("credential_uses", USES, _uses(200, first=100), KEY)  # noqa: SLF001
        assert len(_stored_uses(store)) == 300
