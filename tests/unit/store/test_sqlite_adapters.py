"""The sqlite3 adapters the store registers for bytes and None (store/sqlite_schema.py): found at
once instead of two failed attribute lookups per value, and binding exactly what was bound before."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from kubetrail.store import sqlite_schema  # noqa: F401 - registers the adapters


def test_bytes_and_none_have_registered_adapters() -> None:
    same = sqlite3.adapters[(bytes, sqlite3.PrepareProtocol)]
    data = b"\x00\xffbody"
    assert same(data) is data  # the very object back: no copy per value
    none = sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)]
    assert none(None) is None


def test_base_types_are_not_adapted() -> None:
    """Registering an adapter for int, float, str or bytearray would send every value through the
    protocol (the module's "base type adapted" switch): the store registers none of them."""
    for t in (int, float, str, bytearray):
        assert (t, sqlite3.PrepareProtocol) not in sqlite3.adapters


def test_values_bind_as_before() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE t (a BLOB, b BLOB, c INTEGER, d TEXT, e BLOB)")
    rows = [(b"", b"\x00\x01" * 40, None, "x", bytearray(b"ba")), (b"k" * 32, b"", 7, "", None)]
    db.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows)
    got = db.execute("SELECT a, b, c, d, e, typeof(a), typeof(c), typeof(e) FROM t ORDER BY rowid").fetchall()
    assert got == [(b"", b"\x00\x01" * 40, None, "x", b"ba", "blob", "null", "blob"),
                   (b"k" * 32, b"", 7, "", None, "blob", "integer", "null")]


def test_blob_columns_bind_as_bytearrays_and_read_back_as_before(tmp_path: Path) -> None:
    """``rows.bindable`` turns exactly the BLOB columns' values (bytes, a zstd buffer) into bytearrays,
    which sqlite3 binds without its adapter protocol; the stored values and their types are unchanged."""
    import zstandard

    from kubetrail.store.rows import InsertStatement, bindable

    frame = zstandard.ZstdCompressor().multi_compress_to_buffer([b"body one", b"body two"])
    statement = InsertStatement("INSERT", "t", ("k", "meta", "n", "body"))
    assert statement.blobs == (1, 3)
    values: list[Any] = ["a", b"\x92\x01", 1, frame[0], "b", b"", 2, frame[1]]
    bindable(statement, values)
    assert [type(v) for v in values] == [str, bytearray, int, bytearray] * 2
    with_null: list[Any] = ["c", None, 3, b"x", "d", b"m", 4, b"y"]  # a NULL BLOB stays NULL
    bindable(statement, with_null)
    assert with_null == ["c", None, 3, bytearray(b"x"), "d", bytearray(b"m"), 4, bytearray(b"y")]
    db = sqlite3.connect(str(tmp_path / "t.db"), isolation_level=None)
    db.execute("CREATE TABLE t (k TEXT, meta BLOB, n INTEGER, body BLOB)")
    db.execute(statement.sql(2), values)
    got = db.execute("SELECT k, meta, n, body, typeof(meta), typeof(body) FROM t ORDER BY rowid").fetchall()
    plain = zstandard.ZstdDecompressor()
    assert [(k, m, n, plain.decompress(b), tm, tb) for k, m, n, b, tm, tb in got] == [
        ("a", b"\x92\x01", 1, b"body one", "blob", "blob"), ("b", b"", 2, b"body two", "blob", "blob")]


def test_a_value_that_is_not_bytes_in_a_blob_column_is_refused() -> None:
    """``bytearray(3)`` is three zero bytes and ``bytearray(True)`` one: a non-bytes value in a BLOB
    column must raise rather than be stored as other bytes; the values are left as they were."""
    from kubetrail.store.rows import InsertStatement, bindable

    statement = InsertStatement("INSERT", "t", ("k", "meta"))
    for wrong in (3, True, 1.5, "text"):
        values: list[Any] = ["a", b"ok", "b", wrong]
        with pytest.raises(TypeError, match="BLOB column"):
            bindable(statement, values)
        assert values == ["a", b"ok", "b", wrong]
