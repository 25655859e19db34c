"""Migration 0016: an existing store's entries get their key and auditID heads (store/heads.py); on
SQLite the table is rebuilt without the key's text index, every row kept. The trail then still
verifies, deep check included; lookups by key, key prefix and auditID find the old entries, and a
redelivered old event is still refused."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from test_tamper import db, store_of, verify

from kubetrail.store import open_store
from kubetrail.store.heads import audit_head, key_head
from kubetrail.store.queries import QueryFilters

N = 300  # the golden trail's size


def rows(trail: Path) -> list[tuple[object, ...]]:
    conn = db(trail)
    try:
        return [tuple(r) for r in conn.execute("SELECT * FROM entries ORDER BY leaf_index").fetchall()]
    finally:
        conn.close()


def test_existing_entries_get_their_heads_and_keep_everything_else(trail: Path) -> None:
    before = rows(trail)  # the golden store predates 0016
    assert len(before) == N
    s = store_of(trail)  # a writing open migrates
    try:
        after = s.query(QueryFilters(any_kind=True), body=False)
        keys = {r.leaf_index: (r.key, r.meta.audit_id) for r in after}
        conn = db(trail)
        heads = {int(i): (kh, ah) for i, kh, ah in conn.execute("SELECT leaf_index, key_head, audit_head FROM entries")}
        conn.close()
        assert len(keys) == N and {i: (key_head(k), audit_head(a)) for i, (k, a) in keys.items()} == heads
        key, audit_id = keys[17]
        assert s.get(key).leaf_index == 17  # type: ignore[union-attr]
        assert [r.leaf_index for r in s.query(QueryFilters(key_prefix=key[:7], any_kind=True))] == \
            [i for i, (k, _) in sorted(keys.items()) if k.startswith(key[:7])]
        assert 17 in [r.leaf_index for r in s.query(QueryFilters(audit_id=[audit_id]))]
        again = s.get(key)
        assert again is not None
        again.leaf_index = None
        assert s.append([again]).duplicates == 1 and s.size() == N
    finally:
        s.close()
    assert [r[:len(before[0])] for r in rows(trail)] == before  # the old columns, unchanged
    if not os.environ.get("KUBETRAIL_STORE"):
        conn = db(trail)
        autoindexes = conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'entries' "
                                   "AND sql IS NULL").fetchall()
        assert autoindexes == []  # neither the key's UNIQUE text index nor one for leaf_index (the rowid)
        assert conn.execute("SELECT COUNT(*) FROM entries WHERE rowid = leaf_index").fetchone()[0] == N
        conn.close()
    code, doc = verify(trail, "--deep")
    assert code == 0 and doc["size"] == N, doc


def test_two_stored_keys_with_one_head_keep_the_first_head(tmp_path: Path) -> None:
    """SQLite's head index is UNIQUE: the migration gives the later of two keys with one head none."""
    trail = tmp_path / "t"
    shutil.copytree(Path(__file__).parents[2] / "data" / "trail", trail)
    path = trail / "data" / "kubetrail.db"
    path.chmod(0o644)
    conn = sqlite3.connect(path, isolation_level=None)
    k3 = conn.execute("SELECT key FROM entries WHERE leaf_index = 3").fetchone()[0]
    conn.execute("UPDATE entries SET key = ? WHERE leaf_index = 7", (k3[:15] + "0" * 49,))  # not a real key: a head twin
    conn.close()
    with open_store(str(trail / "data")):  # a writing open migrates
        pass
    conn = sqlite3.connect(path)
    got = dict(conn.execute("SELECT leaf_index, key_head FROM entries WHERE leaf_index IN (3, 7)").fetchall())
    conn.close()
    assert got == {3: key_head(k3), 7: None}


def test_an_older_store_opened_read_only_is_searched_without_heads(tmp_path: Path) -> None:
    """A read-only open does not migrate: lookups by key, key prefix and auditID use the text columns."""
    trail = tmp_path / "t"
    shutil.copytree(Path(__file__).parents[2] / "data" / "trail", trail)
    with open_store(str(trail / "data"), readonly=True) as s:
        assert not s._engine.has_column("entries", "key_head")
        r = next(iter(s.query(QueryFilters(any_kind=True), limit=1)))
        assert s.get(r.key).leaf_index == r.leaf_index  # type: ignore[union-attr]
        assert r.leaf_index in [x.leaf_index for x in s.query(QueryFilters(key_prefix=r.key[:6], any_kind=True))]
        assert [x.leaf_index for x in s.query(QueryFilters(audit_id=[r.meta.audit_id]))] == [r.leaf_index]
        assert s.deep_check() == []


def test_an_upgrade_says_what_it_runs_and_a_fresh_store_says_nothing(trail: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Migration 0016 rewrites every entry (minutes for millions): the open that upgrades says which
    migration runs on how many entries and how long the upgrade took, on stderr; stdout stays clean."""
    if os.environ.get("KUBETRAIL_STORE"):
        pytest.skip("the golden store is a SQLite file: its upgrade is SQLite's")
    store_of(trail).close()
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert f"kubetrail: upgrading the store ({N} entries): migration 0016_integer_heads.sql" in lines, err
    assert lines[-1].startswith("kubetrail: store upgraded (") and lines[-1].endswith(" s"), err
    store_of(trail).close()  # nothing left to apply
    with open_store(str(tmp_path / "fresh")):
        pass
    assert capsys.readouterr() == ("", "")
