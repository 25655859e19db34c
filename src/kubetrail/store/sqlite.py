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

import itertools
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from kubetrail.errors import StoreDamagedError, StoreError, StoreNotFoundError
from kubetrail.record import Record
from kubetrail.store import sqlite_schema
from kubetrail.store.api import AppendResult, Done, PendingAppend
from kubetrail.store.base import StoreBase, first_of_each_key
from kubetrail.store.codec import FRAME
from kubetrail.store.db import placeholders
from kubetrail.store.heads import key_head
from kubetrail.store.rows import MAX_INDEX, describe, insert_sql, row_head
from kubetrail.trail.protocols import Problem

DB_NAME = "kubetrail.db"
_INSERT = insert_sql("INSERT")
_INSERT_OR_ROLLBACK = insert_sql("INSERT OR ROLLBACK")
_LEAF_HASH = operator.itemgetter(-6)  # of a row (``rows.insert_sql``): the head's leaf hash, before (body_sha256,
# key_head, audit_head, leaf index, body)
_KEY_HEAD_AT = -4  # of a row: the key head, before (audit_head, leaf index, body)

__all__ = ["DB_NAME", "MAX_INDEX", "SqliteStore", "Store"]


class _StoredKey(Exception):
    """An optimistic append met a stored key (``INSERT OR ROLLBACK`` ended its transaction)."""


class _Committing:
    """An append whose ``COMMIT`` runs on a thread of its own (``SqliteStore.append_deferred``).

    Why: the commit writes the batch's dirty pages to the WAL, fsyncs it and now and then copies the
    WAL into the database — ~15 µs per event of a 2.9 KB stream (bench/RESULTS.md), all of it in
    SQLite's C code, which runs without the GIL. The pipeline meanwhile decodes and prepares the next
    batch on the other core. Only the commit is moved: the inserts bind their rows one by one, and a
    thread that needs the GIL back after each row would wait a switch interval every time."""

    def __init__(self, store: SqliteStore, records: Sequence[Record], codec_state: object,
                 result: AppendResult) -> None:
        self._store = store
        self._records = records
        self._codec_state = codec_state
        self._result = result
        self._future: Future[None] = Future()
        self._settled = False
        threading.Thread(target=self._commit, name="kubetrail-commit", daemon=True).start()

    def _commit(self) -> None:
        try:
            self._store._conn.execute("COMMIT")
        except BaseException as exc:  # noqa: BLE001 - handed to result(), which undoes the append
            self._future.set_exception(exc)
        else:
            self._future.set_result(None)

    def result(self) -> AppendResult:
        if not self._settled:
            self._settled = True
            self._store._pending = None
            try:
                self._future.result()
            except BaseException:
                self._store._undo(self._records, self._codec_state)
                raise
            self._store._size += len(self._result.stored)
        return self._result


class _Engine:
    """What the repositories ask of SQLite (``kubetrail.store.db.Engine``)."""

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.db = conn

    def has_table(self, name: str) -> bool:
        return sqlite_schema.has_table(self.db, name)

    def has_column(self, table: str, column: str) -> bool:
        return column in {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}

    def stream(self, sql: str, parameters: Sequence[Any] = ()) -> Iterator[Any]:
        return iter(self.db.execute(sql, parameters))  # SQLite cursors step row by row already

    def lock(self, name: str) -> None:
        """``BEGIN IMMEDIATE`` already holds the database's one write lock."""

    def size_bytes(self) -> int:
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        return int(pages) * int(self.db.execute("PRAGMA page_size").fetchone()[0])

    def reclaim(self) -> bool:
        """``VACUUM``, then the WAL folded in: the file shrinks. A pruned body frees room inside its page,
        not whole pages, so only a rebuild gives it back (incremental vacuum would return almost nothing).
        The rebuild holds the write lock and needs free disk as large as the store while it runs."""
        self.db.execute("VACUUM")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return True


class SqliteStore(StoreBase):
    def __init__(self, conn: sqlite3.Connection, data_dir: str, readonly: bool = False, path: str = "") -> None:
        self._conn = conn
        self.data_dir = data_dir
        self.path = path or os.path.join(data_dir, DB_NAME)
        self.readonly = readonly
        self._setup(_Engine(conn))
        self._replaying = False  # the last append found stored keys: look keys up before inserting
        self._size = self.trail.entries_size()
        self._pending: _Committing | None = None  # an append whose commit is running (append_deferred)

    @classmethod
    def open(cls, data_dir: str, create: bool = True, readonly: bool = False, path: str | None = None) -> SqliteStore:
        """Open (and migrate) the store; ``readonly`` opens it without writing anything (see module doc).

        ``path`` is the database file (default: DATA_DIR/kubetrail.db)."""
        path = path or os.path.join(data_dir, DB_NAME)
        where = data_dir if os.path.basename(path) == DB_NAME and os.path.dirname(path) == data_dir else path
        if (readonly or not create) and not os.path.exists(path):
            raise StoreNotFoundError(f"no kubetrail store in {where} (run `kubetrail ingest` first, or pass --data)")
        conn: sqlite3.Connection | None = None
        try:
            if readonly:
                conn = sqlite_schema.connect_readonly(path)
                sqlite_schema.check_version(sqlite_schema.applied(conn))
            else:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                conn = sqlite_schema.connect(path)
                sqlite_schema.migrate(conn)
            return cls(conn, data_dir, readonly, path)
        except (OSError, sqlite3.Error) as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"cannot open the store in {where}: {exc}") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise

    def reopen(self) -> SqliteStore:
        return SqliteStore.open(self.data_dir, create=False, readonly=self.readonly, path=self.path)

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._settle()
        finally:
            self._conn.close()

    def _settle(self) -> None:
        """Finish a deferred commit before the connection is used for anything else (a caller that
        forgot ``result()`` gets its error here rather than a statement inside someone's COMMIT)."""
        if self._pending is not None:
            self._pending.result()

    @contextmanager
    def transaction(self) -> Iterator[SqliteStore]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any exception); the repositories are bound to it."""
        self._settle()
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
        self._settle()
        self._conn.execute("BEGIN")
        try:
            yield self
        finally:
            self._conn.execute("ROLLBACK")

    # -- writing -------------------------------------------------------------------------------
    def size(self) -> int:
        return int(self._size)

    def append(self, records: Sequence[Record], positions: dict[str, str] | None = None) -> AppendResult:
        """Store the records whose keys are new (neither an entry's key nor a key alias), in order,
        and the source positions, atomically.

        The batch's keys are looked up before inserting only while duplicates are likely (the previous
        batch had some: a replay; or key aliases exist). Otherwise the rows go in at once with
        ``INSERT OR ROLLBACK``: the UNIQUE index of the keys' integer heads (store/heads.py), which
        searches for every head anyway, refuses a stored key (or another key with its head) by ending
        the transaction, and the batch is appended again, looking its keys up. The
        lookup costs ~1.5-4 µs per event (bench/store_floor.py "current + key lookup"); a savepoint to
        undo only the insert would cost as much (every page the batch touches copied once)."""
        return self.append_deferred(records, positions, defer=False).result()

    def append_deferred(self, records: Sequence[Record], positions: dict[str, str] | None = None,
                        defer: bool = True) -> PendingAppend:
        """``append`` with the rows inserted now and the ``COMMIT`` on a thread (``_Committing``)."""
        self._settle()
        unique = first_of_each_key(records)
        codec_state = self.codec.snapshot()
        try:
            try:
                result = self._insert(records, unique, positions, self._replaying)
            except _StoredKey:
                self._undo(records, codec_state)
                self._replaying = True
                result = self._insert(records, unique, positions, True)
        except BaseException:
            self._undo(records, codec_state)
            raise
        if defer:
            self._pending = _Committing(self, records, codec_state, result)
            return self._pending
        try:
            self._conn.execute("COMMIT")
        except BaseException:
            self._undo(records, codec_state)
            raise
        self._size += len(result.stored)
        return Done(result)

    def _undo(self, records: Sequence[Record], codec_state: object) -> None:
        """A failed append leaves nothing behind: its transaction, a dictionary trained in it, the
        leaf indexes it gave the records."""
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        self.codec.restore(codec_state)
        for r in records:
            r.leaf_index = None

    def _insert(self, records: Sequence[Record], unique: list[Record], positions: dict[str, str] | None,
                look_up: bool) -> AppendResult:
        """The append's statements, in an open ``BEGIN IMMEDIATE`` transaction the caller commits.
        ``_StoredKey`` when the optimistic insert met a stored key (the transaction is gone then)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        self._size = self.trail.entries_size()
        aliases = self._aliases and conn.execute("SELECT 1 FROM key_aliases LIMIT 1").fetchone() is not None
        if look_up or aliases:
            existing, heads_taken = _existing_keys(conn, [r.key for r in unique], aliases)
            fresh = [r for r in unique if r.key not in existing]
            self._replaying = len(fresh) < len(unique)
            rows = _shared_heads_cleared(self._rows(fresh), heads_taken)
            _execute_rows(conn, _INSERT, rows)
        else:
            fresh = unique
            rows = self._rows(fresh)
            try:
                _execute_rows(conn, _INSERT_OR_ROLLBACK, rows)
            except sqlite3.IntegrityError as exc:  # SQLite has rolled the transaction back
                raise _StoredKey from exc
        # what the tree's hook would read back from the rows just inserted (``TrailTables.staged``)
        self.trail.staged = (self._size, list(map(_LEAF_HASH, rows)))
        try:
            for hook in self.append_hooks:
                hook(self, fresh)
        finally:
            self.trail.staged = None
        if positions:
            now = time.time_ns()
            conn.executemany(
                "INSERT INTO source_positions (source, position, updated_ns) VALUES (?, ?, ?) ON CONFLICT "
                "(source) DO UPDATE SET position = excluded.position, updated_ns = excluded.updated_ns",
                [(s, p, now) for s, p in positions.items()],
            )
        dups = len(records) - len(fresh)
        _bump(conn, {"stored": len(fresh), "duplicates": dups})
        return AppendResult(stored=fresh, duplicates=dups)

    def _rows(self, records: list[Record]) -> list[tuple[Any, ...]]:
        """The records' rows (``rows.insert_sql``: a row head + (leaf index, compressed body)), in one
        pass over the records: each is touched once, while in cache (it takes the leaf index, gives up
        the worker's frame and row head; ``compress_records`` and ``rows.row`` do the same apart)."""
        compress, current = self.codec.batch(records)
        rows: list[tuple[Any, ...]] = []
        add = rows.append
        for i, r in enumerate(records, self._size):
            r.leaf_index = i
            d = r.__dict__
            f = d.pop(FRAME, None)
            add((d.pop("_row_head", None) or row_head(r))
                + (i, f[1] if f is not None and f[0] == current else compress(r.body)))
        return rows

    def count(self, name: str, n: int) -> None:
        """Add to a named counter outside a batch (e.g. rejects)."""
        with self.transaction():
            _bump(self._conn, {name: n})

    def _check_column_types(self) -> None:
        c = self._conn
        for col, want in (("time", "integer"), ("kind", "text"), ("source", "text"), ("format", "text"),
                          ("verb", "text"), ("resource", "text"), ("username", "text")):
            bad = c.execute(f"SELECT leaf_index, {col} FROM entries WHERE typeof({col}) != ? LIMIT 1", (want,)).fetchone()
            if bad is not None:  # named, never printed: a damaged cell can hold binary
                raise StoreDamagedError(f"the stored entry {bad[0]}: column {col} holds {describe(bad[1])}; "
                                        "run `kubetrail verify`")

    def deep_check(self) -> list[Problem]:
        """``PRAGMA integrity_check`` and the schema against the migrations (``kubetrail verify --deep``)."""
        from kubetrail.store.sqlite_deep import deep_check

        return deep_check(self._conn)


Store = SqliteStore  # the name callers used before the store had two engines


def _existing_keys(conn: sqlite3.Connection, keys: list[str], aliases: bool = False) -> tuple[set[str], set[int]]:
    """The stored keys (and key aliases) among ``keys``, and the key heads stored entries hold among
    theirs: a new key whose head another entry holds is stored without one (``_shared_heads_cleared``)."""
    found: set[str] = set()
    taken: set[int] = set()
    heads = sorted({key_head(k) for k in keys})
    for i in range(0, len(heads), 500):
        chunk = heads[i:i + 500]
        for h, k in conn.execute(f"SELECT key_head, key FROM entries WHERE key_head IN ({placeholders(len(chunk))})",
                                 chunk):
            taken.add(h)
            found.add(k)
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        marks = placeholders(len(chunk))
        found.update(k for (k,) in conn.execute(f"SELECT key FROM entries WHERE key_head IS NULL AND key IN ({marks})",
                                                 chunk))
        if aliases:
            found.update(k for (k,) in conn.execute(f"SELECT alias FROM key_aliases WHERE alias IN ({marks})", chunk))
    return found, taken


def _shared_heads_cleared(rows: list[tuple[Any, ...]], taken: set[int]) -> list[tuple[Any, ...]]:
    """The rows, each whose key head an entry (stored, or earlier in the batch) already holds given a
    NULL head instead (store/heads.py: two keys with one head, about one pair in a billion entries)."""
    out = rows
    for i, r in enumerate(rows):
        h = r[_KEY_HEAD_AT]
        if h in taken:
            if out is rows:
                out = list(rows)
            out[i] = (*r[:_KEY_HEAD_AT], None, *r[_KEY_HEAD_AT + 1:])
        else:
            taken.add(h)
    return out


def _execute_rows(conn: sqlite3.Connection, sql: dict[int, str], rows: list[tuple[Any, ...]]) -> None:
    """``executemany`` of ``SqliteStore._rows`` with each row's statement (``sql``, by the row's length),
    in order: one statement for a batch of one kind, else one per run of rows of one kind."""
    if len(lengths := set(map(len, rows))) == 1:
        conn.executemany(sql[lengths.pop()], rows)
    else:
        for n, run in itertools.groupby(rows, len):
            conn.executemany(sql[n], run)


def _bump(conn: sqlite3.Connection, deltas: dict[str, int]) -> None:
    conn.executemany(
        "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        [(k, v) for k, v in deltas.items() if v],
    )
