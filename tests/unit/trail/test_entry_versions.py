"""A store whose first rows were written as v1 entries (before migration 0005) and whose later rows
are v2 verifies; tampering still names the right index in both parts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.store import sqlite as store_sqlite
from kubetrail.store.rows import HEAD_COLUMNS, HEAD_KEYS, LOG_COLUMNS, InsertStatement
from kubetrail.trail.entry import ENTRY_PREFIX, ENTRY_V2_PREFIX, decode_entry, encode_entry, leaf_hash

# What kubetrail wrote before entries v2: the entry bytes stored (the leaf hashes them), no body
# hash column. The store's SQLite rows are a row head + (leaf index, body) with the v2 entry's empty
# column as a literal (``rows.insert_sql``); these rows carry the v1 entry, bound, before the leaf hash.
_V1_COLUMNS = (*HEAD_COLUMNS[:-4], "entry", "leaf_hash", "body_sha256", *HEAD_KEYS, "leaf_index", "body")
_V1_SQL = {len(_V1_COLUMNS): InsertStatement("INSERT OR ROLLBACK", "entries", _V1_COLUMNS, tuple((c, "''") for c in LOG_COLUMNS))}


def _v1_rows(self, records):
    batch = _V2_ROWS(self, records)
    out = []
    for row in batch.rows:
        v = dict(zip((*HEAD_COLUMNS, "leaf_index", "body"), row, strict=True))
        entry = encode_entry(v["key"], v["time"], v["kind"], v["source"], v["seq"], v["body_sha256"])
        out.append((*row[:len(HEAD_COLUMNS) - 4], entry, leaf_hash(entry), None, v["key_head"], v["audit_head"],
                    v["leaf_index"], v["body"]))
    return batch._replace(rows=out)


_V2_ROWS = store_sqlite.SqliteStore._rows


def _ingest(data: Path, tmp: Path, start: int, n: int) -> None:
    from kubetrail.testing import make_event

    log = tmp / f"a{start}.log"
    log.write_bytes(b"".join(orjson.dumps(make_event(f"e-{i}", name=f"o{i}", user=f"u{i % 3}")) + b"\n"
                             for i in range(start, start + n)))
    r = CliRunner().invoke(cli, ["ingest", str(log), "--no-detect", "--data", str(data)])
    assert r.exit_code == 0, r.output


def _verify(data: Path) -> dict:
    r = CliRunner().invoke(cli, ["verify", "--json", "--data", str(data)])
    return orjson.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture
def mixed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "d"
    with monkeypatch.context() as m:
        m.setattr(store_sqlite.SqliteStore, "_rows", _v1_rows)
        m.setattr(store_sqlite, "_INSERT_OR_ROLLBACK", _V1_SQL)
        _ingest(data, tmp_path, 0, 20)
    _ingest(data, tmp_path, 20, 20)
    return data


def test_mixed_store_verifies_and_reads(mixed: Path) -> None:
    assert _verify(mixed)["ok"] is True
    from kubetrail.store.sqlite import Store

    store = Store.open(str(mixed), create=False)
    try:
        entries = {i: e for i, e, _, _ in store.iter_entries()}
    finally:
        store.close()
    assert entries[19].startswith(ENTRY_PREFIX) and entries[20].startswith(ENTRY_V2_PREFIX)
    assert decode_entry(entries[25])["username"] == "u1" and decode_entry(entries[5])["key"]


@pytest.mark.parametrize(("index", "column", "reason"), [
    (5, "seq", "modified"), (25, "username", "modified"), (25, "seq", "modified")])
def test_tampering_in_either_part(mixed: Path, index: int, column: str, reason: str) -> None:
    conn = sqlite3.connect(mixed / "kubetrail.db", isolation_level=None)
    value = 99 if column == "seq" else "mallory"
    conn.execute(f"UPDATE entries SET {column} = ? WHERE leaf_index = ?", (value, index))
    conn.close()
    if index < 20 and column == "seq":
        # a v1 row keeps its header bytes: the seq column is not covered, the stored entry is
        assert _verify(mixed)["ok"] is True
        conn = sqlite3.connect(mixed / "kubetrail.db", isolation_level=None)
        conn.execute("UPDATE entries SET entry = CAST(replace(CAST(entry AS TEXT), '\"seq\":0', '\"seq\":9') AS BLOB) "
                     "WHERE leaf_index = ?", (index,))
        conn.close()
    assert _verify(mixed) == {"ok": False, "first_bad_index": index, "reason": reason}
