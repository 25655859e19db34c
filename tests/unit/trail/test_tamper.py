"""Tamper tests on copies of the golden trail (scripts/make_golden_trail.py): each kind of damage makes
`kubetrail verify` exit 1 naming the exact first bad index and the reason."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.store.codec import BodyCodec
from kubetrail.trail.checkpoint import Checkpoint, sign_checkpoint
from kubetrail.trail.note import Signer

N = 300  # the golden trail's size; the `trail` fixture (a copy of it) is in conftest.py


def verify(trail: Path, *extra: str) -> tuple[int, dict[str, object]]:
    r = CliRunner().invoke(cli, ["verify", "--json", "--data", str(trail / "data"), *extra])
    assert "Traceback" not in r.output, r.output
    return r.exit_code, orjson.loads(r.stdout.strip().splitlines()[-1])


def db(trail: Path) -> Any:
    """A raw connection to the trail's store (``?`` placeholders on either engine), as a tamperer has."""
    url = os.environ.get("KUBETRAIL_STORE")
    if url:
        import psycopg
        from rawdb import OPEN

        from kubetrail.store.postgres import _PgDb

        conn = psycopg.connect(url, autocommit=True)
        OPEN.append(conn)
        return _PgDb(conn)
    return sqlite3.connect(trail / "data" / "kubetrail.db", isolation_level=None)


def store_of(trail: Path) -> Any:
    """The trail's store, opened for writing as kubetrail opens it."""
    from kubetrail.store import open_store

    data = str(trail / "data")
    return open_store(os.environ.get("KUBETRAIL_STORE") or data, data_dir=data)


def columns(conn: Any) -> list[str]:
    if isinstance(conn, sqlite3.Connection):
        return [r[1] for r in conn.execute("PRAGMA table_info(entries)")]
    return [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = "
                                       "'entries' AND table_schema = current_schema() ORDER BY ordinal_position")]


def move(conn: Any, frm: int, to: int) -> None:
    conn.execute("UPDATE entries SET leaf_index = ? WHERE leaf_index = ?", (to, frm))


def shift_up(conn: Any, start: int, by: int = 1) -> None:
    """Renumber leaf indexes >= start (two steps, so the primary key never collides)."""
    conn.execute("UPDATE entries SET leaf_index = -leaf_index - 1 WHERE leaf_index >= ?", (start,))
    conn.execute("UPDATE entries SET leaf_index = -leaf_index - 1 + ? WHERE leaf_index < 0", (by,))


def test_golden_trail_is_intact(trail: Path) -> None:
    code, doc = verify(trail, "--witness", str(trail / "witness"))
    assert code == 0 and doc["ok"] is True and doc["size"] == N and set(doc) == {"ok", "size", "root"}


def expect(trail: Path, index: int, reason: str, *extra: str) -> None:
    code, doc = verify(trail, *extra)
    assert (code, doc) == (1, {"ok": False, "first_bad_index": index, "reason": reason})


def test_flipped_body_byte(trail: Path) -> None:
    conn = db(trail)
    codec = BodyCodec(conn)
    (frame,) = conn.execute("SELECT body FROM entries WHERE leaf_index = 17").fetchone()
    body = bytearray(codec.decompress(bytes(frame)))
    body[body.index(b"obj-17")] ^= 0x01
    conn.execute("UPDATE entries SET body = ? WHERE leaf_index = 17",
                 (zstandard.ZstdCompressor().compress(bytes(body)),))
    expect(trail, 17, "modified")


def test_flipped_raw_body_byte(trail: Path) -> None:
    conn = db(trail)
    (frame,) = conn.execute("SELECT body FROM entries WHERE leaf_index = 18").fetchone()
    bad = bytearray(frame)
    bad[len(bad) // 2] ^= 0x40
    conn.execute("UPDATE entries SET body = ? WHERE leaf_index = 18", (bytes(bad),))
    expect(trail, 18, "modified")


def test_flipped_entry_header_byte(trail: Path) -> None:
    """A v2 entry is rebuilt from the row: changing one of the columns it covers is a modification."""
    db(trail).execute("UPDATE entries SET seq = seq + 1 WHERE leaf_index = 42")
    expect(trail, 42, "modified")


@pytest.mark.parametrize(("column", "value"), [
    ("username", "someone-else"), ("verb", "get"), ("time", 0), ("namespace", "elsewhere"),
    ("source_ip", "10.9.9.9"), ("code", 599), ("meta", b"[]"), ("body_sha256", b"\0" * 32), ("key", "k")])
def test_query_columns_are_covered(trail: Path, column: str, value: object) -> None:
    """Hiding an event from `kubetrail query` by editing an indexed column is caught."""
    db(trail).execute(f"UPDATE entries SET {column} = ? WHERE leaf_index = 77", (value,))
    expect(trail, 77, "modified")


def test_column_of_the_wrong_type(trail: Path) -> None:
    db(trail).execute("UPDATE entries SET meta = ? WHERE leaf_index = 80", (b"\xff\xfe",))
    expect(trail, 80, "modified")


def test_deleted_row(trail: Path) -> None:
    db(trail).execute("DELETE FROM entries WHERE leaf_index = 100")
    expect(trail, 100, "removed")


def test_deleted_row_with_renumbering(trail: Path) -> None:
    conn = db(trail)
    conn.execute("DELETE FROM entries WHERE leaf_index = 100")
    conn.execute("UPDATE entries SET leaf_index = leaf_index - 1 WHERE leaf_index > 100")
    expect(trail, 100, "removed")


def test_inserted_forged_row(trail: Path) -> None:
    conn = db(trail)
    shift_up(conn, 150)
    cols = columns(conn)
    row = list(conn.execute(f"SELECT {', '.join(cols)} FROM entries WHERE leaf_index = 151").fetchone())
    row[cols.index("leaf_index")] = 150
    row[cols.index("key")] = "forged"
    conn.execute(f"INSERT INTO entries ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", row)
    expect(trail, 150, "inserted")


def test_forged_row_appended(trail: Path) -> None:
    conn = db(trail)
    cols = columns(conn)
    row = list(conn.execute(f"SELECT {', '.join(cols)} FROM entries WHERE leaf_index = 5").fetchone())
    row[cols.index("leaf_index")], row[cols.index("key")] = N, "forged"
    conn.execute(f"INSERT INTO entries ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", row)
    expect(trail, N, "inserted")


def test_swapped_rows(trail: Path) -> None:
    conn = db(trail)
    move(conn, 60, -1)
    move(conn, 200, 60)
    move(conn, -1, 200)
    expect(trail, 60, "reordered")


def test_swapped_neighbours(trail: Path) -> None:
    conn = db(trail)
    move(conn, 60, -1)
    move(conn, 61, 60)
    move(conn, -1, 61)
    expect(trail, 60, "reordered")


def test_dropped_last_five_rows(trail: Path) -> None:
    db(trail).execute("DELETE FROM entries WHERE leaf_index >= ?", (N - 5,))
    expect(trail, N - 5, "truncated")


def test_dropped_last_five_rows_and_their_tree(trail: Path) -> None:
    """Even with the tree's own leaves and nodes cut back, the signed checkpoint at 300 remains."""
    conn = db(trail)
    conn.execute("DELETE FROM entries WHERE leaf_index >= ?", (N - 5,))
    conn.execute("DELETE FROM trail_leaves WHERE idx >= ?", (N - 5,))
    conn.execute("DELETE FROM trail_nodes WHERE ((idx + 1) << level) > ?", (N - 5,))
    expect(trail, N - 5, "truncated")


def test_latest_checkpoint_rewritten_with_another_key(trail: Path) -> None:
    conn = db(trail)
    cid, size, root = conn.execute("SELECT id, size, root FROM trail_checkpoints ORDER BY id DESC LIMIT 1").fetchone()
    origin = conn.execute("SELECT note FROM trail_checkpoints WHERE id = ?", (cid,)).fetchone()[0].split("\n")[0]
    other = Signer(origin, b"\x07" * 32)
    conn.execute("UPDATE trail_checkpoints SET note = ? WHERE id = ?",
                 (sign_checkpoint(Checkpoint(origin, size, bytes(root)), other), cid))
    expect(trail, 256, "bad-signature")  # 256: the last size a valid checkpoint still vouches for


def rollback(conn: Any, size: int) -> None:
    """What restoring an older copy of the store looks like: everything after ``size`` is gone."""
    conn.execute("DELETE FROM entries WHERE leaf_index >= ?", (size,))
    conn.execute("DELETE FROM trail_leaves WHERE idx >= ?", (size,))
    conn.execute("DELETE FROM trail_nodes WHERE ((idx + 1) << level) > ?", (size,))
    conn.execute("DELETE FROM trail_checkpoints WHERE size > ?", (size,))


def test_rolled_back_store_is_intact_alone_but_not_to_the_witness(trail: Path) -> None:
    rollback(db(trail), 192)
    assert verify(trail)[0] == 0  # on its own an old copy looks fine: that is what witnesses are for
    expect(trail, 192, "truncated", "--witness", str(trail / "witness"))


def test_rolled_back_and_regrown_store_forks_from_the_witness(trail: Path) -> None:
    """A rollback followed by different entries: the witness checkpoint at 256 no longer matches."""
    conn = db(trail)
    rollback(conn, 192)
    conn.execute("DELETE FROM entries WHERE leaf_index >= 192")
    from kubetrail.record import Decoded, SourceRef
    from kubetrail.stages.extract import to_record
    from kubetrail.testing import make_event
    from kubetrail.trail.checkpointer import make_checkpointer

    store = store_of(trail)
    cp = make_checkpointer(store, None)
    recs = [to_record(Decoded(make_event(f"fork-{i}"), "event", str(i)), SourceRef(stream="x")) for i in range(120)]
    cp.consume(store.append(recs).stored, store)
    store.close()
    assert verify(trail)[0] == 0
    expect(trail, 192, "inconsistent-checkpoint", "--witness", str(trail / "witness"))


def test_retention_keeps_the_trail_verifiable(trail: Path) -> None:
    r = CliRunner().invoke(cli, ["retention", "--max-age", "2024-05-01T10:03:00Z", "--json",
                                 "--data", str(trail / "data")])
    assert r.exit_code == 0, r.output
    assert orjson.loads(r.stdout)["pruned"] == 180
    r = CliRunner().invoke(cli, ["retention", "--max-bytes", "1K", "--json", "--data", str(trail / "data")])
    assert orjson.loads(r.stdout)["bytes_left"] <= 1024
    code, doc = verify(trail, "--witness", str(trail / "witness"))
    assert code == 0 and doc["size"] == N
