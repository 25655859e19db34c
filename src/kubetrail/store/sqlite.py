"""The embedded store: one SQLite file in the data directory, WAL mode, one writer.

Every stored record is a trail leaf: ``entries.leaf_index`` is contiguous from 0 and assigned in
the same transaction that inserts the row, together with the source positions that produced the
batch, so a crash can never leave a position ahead of its data (at-least-once in) nor a key
stored twice (exactly-once out: the store refuses a key it already holds).

``append_hooks`` run inside that transaction (before an optimistic append's rows are inserted, on the
commit thread: ``_Committing``; they are handed the rows' leaf hashes): the trail keeps its Merkle
nodes there so that the tree and the entries never disagree. The body codec's state follows
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
from typing import Any, NamedTuple

import zstandard

from kubetrail.errors import StoreDamagedError, StoreError, StoreNotFoundError
from kubetrail.record import Record
from kubetrail.store import sqlite_schema
from kubetrail.store.api import AppendResult, PendingAppend
from kubetrail.store.base import StoreBase, first_of_each_key
from kubetrail.store.codec import FRAME, compress_together
from kubetrail.store.db import placeholders
from kubetrail.store.heads import key_head
from kubetrail.store.rows import (
    MAX_INDEX,
    InsertStatement,
    bindable,
    describe,
    insert_sql,
    row_head,
    rows_for,
)
from kubetrail.trail.protocols import Problem

DB_NAME = "kubetrail.db"
_INSERT = insert_sql("INSERT")
_INSERT_OR_ROLLBACK = insert_sql("INSERT OR ROLLBACK")
# the tree's rows of an append whose entries go in on the commit thread (``TrailTables.staging``)
_TREE_INSERT = {"trail_leaves": InsertStatement("INSERT", "trail_leaves", ("idx", "hash")),
                "trail_nodes": InsertStatement("INSERT", "trail_nodes", ("level", "idx", "hash"))}
_LEAF_HASH = operator.itemgetter(-6)  # of a row (``rows.insert_sql``): the head's leaf hash, before (body_sha256,
# key_head, audit_head, leaf index, body)
_KEY_HEAD_AT = -4  # of a row: the key head, before (audit_head, leaf index, body)

__all__ = ["DB_NAME", "MAX_INDEX", "SqliteStore", "Store"]


class _StoredKey(Exception):
    """An optimistic append met a stored key (``INSERT OR ROLLBACK`` ended its transaction)."""


class _Committing:
    """An append's last statements: the optimistic insert of its rows, then ``COMMIT``; on a thread of
    their own (``SqliteStore.append_deferred``) or at once (``append``).

    Why a thread: compressing the bodies, inserting the rows (the indexes' b-trees) and the commit (the
    dirty pages written to the WAL, fsynced, now and then copied into the database) run in zstd's and
    SQLite's C code without the GIL, while the pipeline decodes and prepares the next batch on the other
    core: 16-20 % of the main thread's instructions per event moved here (bench/RESULTS.md "Tenth
    session"); binding the values still takes the GIL. The rows go in a few statements
    of up to ``MOST_ROWS`` rows each (``rows.InsertStatement``: one per row would need the GIL back
    after every row). Everything else of the append (the look-ups, the tree's nodes, the positions)
    ran before, in the caller's thread: a stored key met here (``_StoredKey``) is appended again there,
    looking the batch's keys up (``result``)."""

    def __init__(self, store: SqliteStore, records: Sequence[Record], unique: list[Record],
                 positions: dict[str, str] | None, codec_state: object, result: AppendResult,
                 rows: _Rows | None) -> None:
        self._store = store
        self._records = records
        self._unique = unique
        self._positions = positions
        self._codec_state = codec_state
        self._result = result
        self._rows = rows
        self._future: Future[None] = Future()
        self._settled = False

    def start(self) -> _Committing:
        threading.Thread(target=self.run, name="kubetrail-commit", daemon=True).start()
        return self

    def run(self) -> None:
        conn = self._store._conn
        try:
            if self._rows is not None:
                if self._rows.rows:
                    try:
                        _execute_rows(conn, _INSERT_OR_ROLLBACK, self._rows)
                    except sqlite3.IntegrityError as exc:  # SQLite has rolled the transaction back
                        raise _StoredKey from exc
                for table, rows in self._rows.tree:
                    _insert_many(conn, _TREE_INSERT[table], rows)
            conn.execute("COMMIT")
        except BaseException as exc:  # noqa: BLE001 - handed to result(), which undoes the append
            self._future.set_exception(exc)
        else:
            self._future.set_result(None)
        finally:
            self._rows = None  # the batch's frames are not kept while the caller holds this

    def result(self) -> AppendResult:
        if not self._settled:
            self._settled = True
            store = self._store
            store._pending = None
            try:
                try:
                    self._future.result()
                except _StoredKey:
                    store._undo(self._records, self._codec_state)
                    store._replaying = True
                    self._result, rows = store._insert(self._records, self._unique, self._positions, True)
                    assert rows is None, "a look-up append inserts its rows itself"
                    store._conn.execute("COMMIT")
            except BaseException:
                store._undo(self._records, self._codec_state)
                raise
            store._size += len(self._result.stored)
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

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders(len(columns))})", rows)

    def insert_new_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                        key: Sequence[str]) -> None:
        if rows:
            self.db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders(len(columns))}) "
                                f"ON CONFLICT ({', '.join(key)}) DO NOTHING", rows)

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
        """``append`` with its last statements (the optimistic insert and ``COMMIT``) on a thread
        (``_Committing``); everything else ran when it returns."""
        self._settle()
        unique = first_of_each_key(records)
        codec_state = self.codec.snapshot()
        try:
            result, rows = self._insert(records, unique, positions, self._replaying)
        except BaseException:
            self._undo(records, codec_state)
            raise
        committing = _Committing(self, records, unique, positions, codec_state, result, rows)
        if defer:
            self._pending = committing.start()
        else:
            committing.run()
        return committing

    def _undo(self, records: Sequence[Record], codec_state: object) -> None:
        """A failed append leaves nothing behind: its transaction, a dictionary trained in it, the
        leaf indexes it gave the records."""
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        self.codec.restore(codec_state)
        for r in records:
            r.leaf_index = None

    def _insert(self, records: Sequence[Record], unique: list[Record], positions: dict[str, str] | None,
                look_up: bool) -> tuple[AppendResult, _Rows | None]:
        """The append's statements, in an open ``BEGIN IMMEDIATE`` transaction the caller commits, and
        the rows still to insert: the entries' with ``INSERT OR ROLLBACK`` and the tree's (None when
        ``look_up``: the batch's keys were looked up and everything inserted). The tree's hook needs no
        row inserted: it is handed the rows' leaf hashes (``TrailTables.staging``)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        self._size = self.trail.entries_size()
        aliases = self._aliases and conn.execute("SELECT 1 FROM key_aliases LIMIT 1").fetchone() is not None
        later: _Rows | None = None
        if look_up or aliases:
            existing, heads_taken = _existing_keys(conn, [r.key for r in unique], aliases)
            fresh = [r for r in unique if r.key not in existing]
            self._replaying = len(fresh) < len(unique)
            batch = self._rows(fresh)
            batch = batch._replace(rows=_shared_heads_cleared(batch.rows, heads_taken))
            _execute_rows(conn, _INSERT, batch)
        else:
            fresh = unique
            batch = later = self._rows(fresh)
        # the hooks' tree rows go in with the batch's on the commit thread (``TrailTables.staging``)
        with self.trail.staging(self._size, list(map(_LEAF_HASH, batch.rows)), later.tree if later is not None else None):
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
        return AppendResult(stored=fresh, duplicates=dups), later

    def prepare(self, records: Sequence[Record]) -> None:
        """The records' row heads (``rows.row_head``: everything of a row but its leaf index and body),
        left on each as ``_row_head`` for ``_rows``, unless a preparation worker left one already.
        ``Pipeline.ingest_items`` calls this before waiting for the previous batch's commit: the commit
        thread then has that much more time to finish, and the pipeline waited for it ~0.75 s in 8.5
        (a Metadata file in one process: bench/RESULTS.md "Eleventh session")."""
        for r in records:
            d = r.__dict__
            if "_row_head" not in d:
                d["_row_head"] = row_head(r)

    def _rows(self, records: list[Record]) -> _Rows:
        """The records' rows (``rows.insert_sql``: a row head + (leaf index, body)), in one pass over the
        records: each is touched once, while in cache (it takes the leaf index, gives up the worker's
        frame and row head; ``compress_records`` and ``rows.row`` do the same apart). A row's body is a
        worker's frame when it was made with the current dictionary, else the uncompressed body, which
        ``_Rows.bodies`` compresses with the others in one call (on the commit thread)."""
        compressor, current = self.codec.batch(records)
        rows: list[tuple[Any, ...]] = []
        raw: list[int] = []
        add = rows.append
        for n, r in enumerate(records):
            r.leaf_index = i = self._size + n
            d = r.__dict__
            f = d.pop(FRAME, None)
            if f is not None and f[0] == current:
                body = f[1]
            else:
                body = r.body
                raw.append(n)
            add((d.pop("_row_head", None) or row_head(r)) + (i, body))
        return _Rows(rows, raw, compressor, [])

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


class _Rows(NamedTuple):
    """A batch's rows (``SqliteStore._rows``), which of them still hold an uncompressed body, and the
    tree's rows its append adds: what the commit thread inserts."""

    rows: list[tuple[Any, ...]]
    raw: list[int]  # the rows whose last value is the body itself, not its frame
    compressor: zstandard.ZstdCompressor
    tree: list[tuple[str, list[tuple[Any, ...]]]]  # the tree's new rows, by table (``TrailTables.staging``)

    def bodies(self) -> Sequence[Any] | None:
        """Every row's body frame (None: the rows hold their frames already); the uncompressed ones
        compressed together (``codec.compress_together``: without the GIL)."""
        raw = self.raw
        if not raw:
            return None
        frames = compress_together(self.compressor, [self.rows[i][-1] for i in raw])
        if len(raw) == len(self.rows):
            return frames
        out: list[Any] = [r[-1] for r in self.rows]
        for i, f in zip(raw, frames, strict=True):
            out[i] = f
        return out


MOST_ROWS = 2048  # rows per INSERT statement at most (``rows.InsertStatement``)


def _execute_rows(conn: sqlite3.Connection, statements: dict[int, InsertStatement], batch: _Rows) -> None:
    """The rows of ``SqliteStore._rows``, their bodies compressed, in order: a run of rows of one kind
    (one length) at a time (``_insert_many``)."""
    bodies = batch.bodies()
    done = 0
    for width, run in itertools.groupby(batch.rows, len):
        same = list(run)
        _insert_many(conn, statements[width], same, None if bodies is None else bodies[done:done + len(same)])
        done += len(same)


def _insert_many(conn: sqlite3.Connection, statement: InsertStatement, rows: Sequence[tuple[Any, ...]],
                 bodies: Sequence[Any] | None = None) -> None:
    """Rows of one shape, in order, in statements of up to ``MOST_ROWS`` rows (fewer when SQLite was
    built to take fewer variables), the last one padded (``InsertStatement``); ``bodies``, when given,
    replace each row's last value."""
    width = statement.width
    most = 1 << (min(MOST_ROWS, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width).bit_length() - 1)
    for i in range(0, len(rows), most):
        part = rows[i:i + most]
        n = rows_for(len(part), most)
        values = list(itertools.chain.from_iterable(part))
        if bodies is not None:
            values[width - 1::width] = bodies[i:i + len(part)]
        bindable(statement, values)
        if n > len(part):
            values.extend(statement.padding * (n - len(part)))  # dropped by the statement
        conn.execute(statement.sql(n), values)


def _bump(conn: sqlite3.Connection, deltas: dict[str, int]) -> None:
    conn.executemany(
        "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        [(k, v) for k, v in deltas.items() if v],
    )
