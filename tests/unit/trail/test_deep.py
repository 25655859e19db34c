"""`verify --deep` on copies of the golden trail: a doctored index hides a row from `kubetrail query`
while every leaf verifies; the integrity check and the schema comparison catch it."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from test_tamper import db, expect, verify

from kubetrail.cli import cli

FULL = "CREATE INDEX entries_user ON entries (username, time)"


def partial_index(conn: sqlite3.Connection, hide: int) -> str:
    user = conn.execute("SELECT username FROM entries WHERE leaf_index = ?", (hide,)).fetchone()[0]
    conn.execute("DROP INDEX entries_user")
    conn.execute(f"{FULL} WHERE leaf_index != {hide}")
    return str(user)


def restore_definition(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA writable_schema=ON")
    conn.execute("UPDATE sqlite_schema SET sql = ? WHERE name = 'entries_user'", (FULL,))
    conn.execute("PRAGMA writable_schema=OFF")


def queried(trail: Path, user: str) -> list[int]:
    r = CliRunner().invoke(cli, ["query", "--json", "--user", user, "--data", str(trail / "data")])
    assert r.exit_code == 0, r.output
    return [orjson.loads(x)["leaf_index"] for x in r.stdout.splitlines()]


def test_golden_trail_is_intact_deep(trail: Path) -> None:
    assert verify(trail, "--deep") == (0, verify(trail)[1])


def test_doctored_index_with_its_definition_restored(trail: Path) -> None:
    if os.environ.get("KUBETRAIL_STORE"):
        pytest.skip("SQLite only: PostgreSQL keeps index definitions in its catalog (no writable_schema)")
    conn = db(trail)
    user = partial_index(conn, 77)
    restore_definition(conn)
    conn.close()
    assert 77 not in queried(trail, user)  # the attack works: the row is hidden from searches…
    assert verify(trail)[0] == 0  # …and every leaf is intact
    expect(trail, 77, "modified", "--deep")


def test_partial_index_left_as_it_is(trail: Path) -> None:
    conn = db(trail)
    partial_index(conn, 77)
    conn.close()
    r = CliRunner().invoke(cli, ["verify", "--deep", "--json", "--data", str(trail / "data")])
    assert r.exit_code == 1 and orjson.loads(r.stdout)["reason"] == "modified"
    assert "index entries_user is not what the migrations create" in r.stderr


def test_an_added_trigger_is_reported(trail: Path) -> None:
    conn = db(trail)
    if os.environ.get("KUBETRAIL_STORE"):
        conn.execute("CREATE FUNCTION hide() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$BEGIN NEW.username := ''; RETURN NEW; END$$")
        conn.execute("CREATE TRIGGER hide BEFORE INSERT ON entries FOR EACH ROW EXECUTE FUNCTION hide()")
    else:
        conn.execute("CREATE TRIGGER hide AFTER INSERT ON entries BEGIN "
                     "UPDATE entries SET username = '' WHERE leaf_index = NEW.leaf_index; END")
    r = CliRunner().invoke(cli, ["verify", "--deep", "--json", "--data", str(trail / "data")])
    assert r.exit_code == 1 and "unexpected trigger hide" in r.stderr
    assert orjson.loads(r.stdout) == {"ok": False, "first_bad_index": 0, "reason": "modified"}


def test_a_partial_index_with_a_narrower_predicate_is_reported(trail: Path) -> None:
    """Migration 0009's log indexes are partial by design (``WHERE workload <> ''``): the check compares
    the predicate itself, so one narrowed to skip a row is named, and the migration's own passes."""
    from test_tamper import store_of

    store_of(trail).close()  # the golden store predates 0009: migrate it as any writing open does
    assert verify(trail, "--deep")[0] == 0
    conn = db(trail)
    conn.execute("DROP INDEX entries_workload")
    conn.execute("CREATE INDEX entries_workload ON entries (workload, time) WHERE workload <> '' AND leaf_index <> 77")
    r = CliRunner().invoke(cli, ["verify", "--deep", "--json", "--data", str(trail / "data")])
    assert r.exit_code == 1 and orjson.loads(r.stdout)["reason"] == "modified"
    assert "index entries_workload is not what the migrations create" in r.stderr


def test_an_index_on_other_columns_is_reported(trail: Path) -> None:
    conn = db(trail)
    conn.execute("DROP INDEX entries_user")
    conn.execute("CREATE INDEX entries_user ON entries (username)")
    r = CliRunner().invoke(cli, ["verify", "--deep", "--json", "--data", str(trail / "data")])
    assert r.exit_code == 1 and "index entries_user is not what the migrations create" in r.stderr
