"""The embedded store: one SQLite file in the data directory, WAL mode, one writer.

Every stored record is a trail leaf: ``entries.leaf_index`` is contiguous from 0 and assigned in
the same transaction that inserts the row, together with the source positions that produced the
batch, so a crash can never leave a position ahead of its data (at-least-once in) nor a key
stored twice (exactly-once out: the store refuses a key it already holds).

``append_hooks`` run inside that transaction, after the rows are inserted: the trail keeps its
Merkle nodes there so that the tree and the entries never disagree. The body codec's state follows
the transaction too (a dictionary trained in a rolled-back append is forgotten).

``SqliteStore.open(data_dir, readonly=True)`` is for commands that only read (query, verify,
proofs…): a ``mode=ro`` connection that runs no migration and sets no pragma, so a store on a
read-only volume or owned by another user can still be searched and verified.

One connection serves the store and its repositories; ``transaction()`` is ``BEGIN IMMEDIATE`` …
``COMMIT`` on it, and the repositories outside a transaction run in autocommit.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec
import zstandard

from kubetrail.errors import StoreDamagedError, StoreError, StoreNotFoundError
from kubetrail.record import LogMeta, Record
from kubetrail.store import sqlite_schema
from kubetrail.store.alerts import AlertTables, OutboxTable
from kubetrail.store.api import AppendHook, AppendResult
from kubetrail.store.codec import BodyCodec
from kubetrail.store.credentials import CredentialTables
from kubetrail.store.detector_state import DetectorStateTable
from kubetrail.store.keys import KeyTables
from kubetrail.store.queries import LogFilters, QueryFilters, log_where_clause, where_clause
from kubetrail.store.retention import RetentionTables
from kubetrail.store.rows import (
    COLUMNS,
    ENTRY_SELECT,
    INSERT_COLUMNS,
    MAX_INDEX,
    decode_record,
    describe,
    row,
    row_entry,
)
from kubetrail.store.trail import TrailTables
from kubetrail.trail.verify import Problem

DB_NAME = "kubetrail.db"
_INSERT = f"INSERT INTO entries ({', '.join(INSERT_COLUMNS)}) VALUES ({', '.join('?' * len(INSERT_COLUMNS))})"

__all__ = ["DB_NAME", "MAX_INDEX", "SqliteStore", "Store"]


class _Engine:
    """What the repositories ask of SQLite (``kubetrail.store.db.Engine``)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.db = conn

    def has_table(self, name: str) -> bool:
        return sqlite_schema.has_table(self.db, name)


class SqliteStore:
    def __init__(self, conn: sqlite3.Connection, data_dir: str, readonly: bool = False) -> None:
        self._conn = conn
        self.data_dir = data_dir
        self.readonly = readonly
        self.append_hooks: list[AppendHook] = []
        self.codec = BodyCodec(conn)
        engine = _Engine(conn)
        self.trail = TrailTables(engine)
        self.alerts = AlertTables(engine)
        self.outbox = OutboxTable(engine)
        self.credentials = CredentialTables(engine)
        self.state = DetectorStateTable(engine)
        self.retention = RetentionTables(engine, self.transaction)
        self.keys = KeyTables(engine)
        self._aliases = self.has_table("key_aliases")  # absent in a read-only store of an older version
        self._size = self.trail.entries_size()

    @classmethod
    def open(cls, data_dir: str, create: bool = True, readonly: bool = False) -> SqliteStore:
        """Open (and migrate) the store; ``readonly`` opens it without writing anything (see module doc)."""
        path = os.path.join(data_dir, DB_NAME)
        if (readonly or not create) and not os.path.exists(path):
            raise StoreNotFoundError(f"no kubetrail store in {data_dir} (run `kubetrail ingest` first, or pass --data)")
        conn: sqlite3.Connection | None = None
        try:
            if readonly:
                conn = sqlite_schema.connect_readonly(path)
                sqlite_schema.check_version(sqlite_schema.applied(conn))
            else:
                os.makedirs(data_dir, exist_ok=True)
                conn = sqlite_schema.connect(path)
                sqlite_schema.migrate(conn)
            return cls(conn, data_dir, readonly)
        except (OSError, sqlite3.Error) as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"cannot open the store in {data_dir}: {exc}") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise

    def reopen(self) -> SqliteStore:
        return SqliteStore.open(self.data_dir, create=False, readonly=self.readonly)

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[SqliteStore]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any exception); the repositories are bound to it."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def snapshot(self) -> Iterator[SqliteStore]:
        """A read transaction: every read inside sees one state even while another process appends."""
        self._conn.execute("BEGIN")
        try:
            yield self
        finally:
            self._conn.execute("ROLLBACK")

    def has_table(self, name: str) -> bool:
        return sqlite_schema.has_table(self._conn, name)

    # -- writing -------------------------------------------------------------------------------
    def size(self) -> int:
        return int(self._size)

    def append(self, records: Sequence[Record], positions: dict[str, str] | None = None) -> AppendResult:
        """Store the records whose keys are new (neither an entry's key nor a key alias), in order,
        and the source positions, atomically."""
        conn = self._conn
        seen: set[str] = set()
        unique: list[Record] = []
        for r in records:
            if r.key not in seen:
                seen.add(r.key)
                unique.append(r)
        codec_state = self.codec.snapshot()
        try:
            with self.transaction():
                self._size = self.trail.entries_size()
                existing = _existing_keys(conn, [r.key for r in unique], self._aliases)
                fresh = [r for r in unique if r.key not in existing]
                bodies = self.codec.compress_many([r.body for r in fresh])
                rows = []
                for i, r in enumerate(fresh):
                    r.leaf_index = self._size + i
                    rows.append(row(r, bodies[i]))
                conn.executemany(_INSERT, rows)
                for hook in self.append_hooks:
                    hook(self, fresh)
                if positions:
                    now = time.time_ns()
                    conn.executemany(
                        "INSERT INTO source_positions (source, position, updated_ns) VALUES (?, ?, ?) ON CONFLICT "
                        "(source) DO UPDATE SET position = excluded.position, updated_ns = excluded.updated_ns",
                        [(s, p, now) for s, p in positions.items()],
                    )
                dups = len(records) - len(fresh)
                _bump(conn, {"stored": len(fresh), "duplicates": dups})
        except BaseException:
            self.codec.restore(codec_state)  # a dictionary trained in this transaction is gone with it
            for r in records:
                r.leaf_index = None
            raise
        self._size += len(fresh)
        return AppendResult(stored=fresh, duplicates=dups)

    def count(self, name: str, n: int) -> None:
        """Add to a named counter outside a batch (e.g. rejects)."""
        with self.transaction():
            _bump(self._conn, {name: n})

    def position(self, source: str) -> str | None:
        row = self._conn.execute("SELECT position FROM source_positions WHERE source = ?", (source,)).fetchone()
        return row[0] if row else None

    # -- reading -------------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT name, value FROM counters").fetchall())

    def query(self, filters: QueryFilters, limit: int | None = None, order: str = "ASC") -> Iterator[Record]:
        where, params = where_clause(filters)
        order = "DESC" if order.upper() == "DESC" else "ASC"
        sql = f"SELECT {COLUMNS} FROM entries {where} ORDER BY time {order}, leaf_index {order}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        for r in self._conn.execute(sql, params):
            yield self._record(r)

    def logs(self, filters: LogFilters, limit: int | None = None, order: str = "ASC",
             by: str = "time") -> Iterator[Record]:
        """Log lines (kinds container, node, k8s_event) matching ``filters``, by event time (or by
        leaf index with ``by="leaf"``, for ``--follow``); each re-checked against its covered meta."""
        if not self._has_log_columns():  # a store from before log lines, opened read-only: none
            return
        where, params = log_where_clause(filters)
        order = "DESC" if order.upper() == "DESC" else "ASC"
        keys = f"time {order}, leaf_index {order}" if by == "time" else f"leaf_index {order}"
        sql = f"SELECT {COLUMNS} FROM entries {where} ORDER BY {keys}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        for r in self._conn.execute(sql, params):
            rec = self._record(r)
            if isinstance(rec.meta, LogMeta) and filters.matches(rec.meta, rec.kind, rec.time):
                yield rec

    def count_logs(self, filters: LogFilters) -> int:
        if not self._has_log_columns():
            return 0
        where, params = log_where_clause(filters)
        return int(self._conn.execute(f"SELECT COUNT(*) FROM entries {where}", params).fetchone()[0])

    def _has_log_columns(self) -> bool:
        """Whether migration 0009 ran (a read-only open of an older store does not migrate it)."""
        if self.__dict__.get("_log_columns") is None:
            cols = {r[1] for r in self._conn.execute("PRAGMA table_info(entries)")}
            self.__dict__["_log_columns"] = "workload" in cols
        return bool(self.__dict__["_log_columns"])

    def count_matching(self, filters: QueryFilters) -> int:
        where, params = where_clause(filters)
        return int(self._conn.execute(f"SELECT COUNT(*) FROM entries {where}", params).fetchone()[0])

    def get(self, key: str) -> Record | None:
        """The record with this key or key alias (``store rekey``), or a leaf index given as digits."""
        r = self._conn.execute(f"SELECT {COLUMNS} FROM entries WHERE key = ?", (key,)).fetchone()
        if r is None and self._aliases:
            r = self._conn.execute(f"SELECT {COLUMNS} FROM entries WHERE leaf_index = "
                                   "(SELECT leaf_index FROM key_aliases WHERE alias = ?)", (key,)).fetchone()
        if r is None and key.isdigit():
            if int(key) > MAX_INDEX:
                raise StoreError(f"leaf index {key} is out of range (at most {MAX_INDEX})")
            r = self._conn.execute(f"SELECT {COLUMNS} FROM entries WHERE leaf_index = ?", (int(key),)).fetchone()
        return self._record(r) if r else None

    def records_by_index(self, start: int, end: int) -> Iterator[Record]:
        sql = f"SELECT {COLUMNS} FROM entries WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index"
        for r in self._conn.execute(sql, (start, end)):
            yield self._record(r)

    def iter_entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes, bytes, bytes | None]]:
        """(leaf_index, entry, leaf_hash, decompressed body or None) in index order, streamed."""
        end = self.size() if end is None else end
        cur = self._conn.execute(
            f"SELECT {ENTRY_SELECT} FROM entries WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index",
            (start, end))
        for r in cur:
            body = r[3]
            yield r[0], row_entry(r), bytes(r[2]), self.codec.decompress(body) if body is not None else None

    def stats(self) -> dict[str, Any]:
        c = self._conn
        out: dict[str, Any] = {"entries": self.size(), "counters": self.counters()}
        out["bodies_kept"] = c.execute("SELECT COUNT(*) FROM entries WHERE body IS NOT NULL").fetchone()[0]
        for col, want in (("time", "integer"), ("kind", "text"), ("source", "text"), ("format", "text"),
                          ("verb", "text"), ("resource", "text"), ("username", "text")):
            bad = c.execute(f"SELECT leaf_index, {col} FROM entries WHERE typeof({col}) != ? LIMIT 1", (want,)).fetchone()
            if bad is not None:  # named, never printed: a damaged cell can hold binary
                raise StoreDamagedError(f"the stored entry {bad[0]}: column {col} holds {describe(bad[1])}; "
                                        "run `kubetrail verify`")
        span = c.execute("SELECT MIN(time), MAX(time) FROM entries").fetchone()
        out["first_time"], out["last_time"] = span
        for col in ("kind", "source", "format", "verb", "resource", "username"):
            out[f"top_{col}"] = c.execute(
                f"SELECT {col}, COUNT(*) n FROM entries GROUP BY {col} ORDER BY n DESC LIMIT 10").fetchall()
        for col in ("workload", "node", "unit") if self._has_log_columns() else ():  # log lines (node agent)
            out[f"top_{col}"] = c.execute(
                f"SELECT {col}, COUNT(*) n FROM entries WHERE {col} <> '' GROUP BY {col} ORDER BY n DESC LIMIT 10"
            ).fetchall()
        try:
            out["db_bytes"] = os.path.getsize(os.path.join(self.data_dir, DB_NAME))
        except OSError:
            out["db_bytes"] = None
        return out

    def histogram(self, since: int, bucket_ns: int) -> list[tuple[int, str, int]]:
        b = max(int(bucket_ns), 1)
        rows = self._conn.execute("SELECT ? + ((time - ?) / ?) * ?, kind, COUNT(*) FROM entries WHERE time >= ? "
                                  "GROUP BY 1, 2 ORDER BY 1, 2", (since, since, b, b, since))
        return [(int(t), str(k), int(n)) for t, k, n in rows]

    def sources(self, since: int | None = None) -> list[tuple[str, str, int, int, int]]:
        where, params = ("WHERE time >= ? ", [since]) if since is not None else ("", [])
        rows = self._conn.execute("SELECT source, kind, COUNT(*), MIN(time), MAX(time) FROM entries "
                                  f"{where}GROUP BY source, kind ORDER BY source, kind", params)
        return [(str(s), str(k), int(n), int(lo), int(hi)) for s, k, n, lo, hi in rows]

    def decompress(self, body: bytes) -> bytes:
        return self.codec.decompress(body)

    def deep_check(self) -> list[Problem]:
        """``PRAGMA integrity_check`` and the schema against the migrations (``kubetrail verify --deep``)."""
        from kubetrail.store.sqlite_deep import deep_check

        return deep_check(self._conn)

    def _record(self, r: tuple[Any, ...]) -> Record:
        try:
            return decode_record(r, self.codec.decompress)
        except (ValueError, TypeError, msgspec.DecodeError, zstandard.ZstdError) as exc:
            which = f"entry {r[0]}" if isinstance(r[0], int) else f"an entry whose leaf_index holds {describe(r[0])}"
            raise StoreDamagedError(f"the stored {which} cannot be read ({_safe(exc)}); run `kubetrail verify`") from exc


Store = SqliteStore  # the name callers used before the store had two engines


def _safe(exc: BaseException) -> str:
    """An error message fit to print: one that quotes stored bytes is named by its type instead."""
    text = str(exc)
    return text if text.isprintable() and "b'" not in text and 'b"' not in text else type(exc).__name__


def _existing_keys(conn: sqlite3.Connection, keys: list[str], aliases: bool = False) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        marks = ",".join("?" * len(chunk))
        found.update(k for (k,) in conn.execute(f"SELECT key FROM entries WHERE key IN ({marks})", chunk))
        if aliases:
            found.update(k for (k,) in conn.execute(f"SELECT alias FROM key_aliases WHERE alias IN ({marks})", chunk))
    return found


def _bump(conn: sqlite3.Connection, deltas: dict[str, int]) -> None:
    conn.executemany(
        "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        [(k, v) for k, v in deltas.items() if v],
    )
