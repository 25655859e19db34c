"""The sqlite3 adapters the store registers for bytes and None (store/sqlite_schema.py): found at
once instead of two failed attribute lookups per value, and binding exactly what was bound before."""

from __future__ import annotations

import sqlite3

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
