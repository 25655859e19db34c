"""The store on PostgreSQL (psycopg 3, psycopg_pool): many collectors, one trail.

Same tables, repositories and queries as SQLite (store/base.py); what differs is here.

**Many writers, one trail** (docs/specs/trail-format.md, "Several writers"): ``append`` does the
per-record work outside any lock — the duplicate check against committed keys, compression, the
row and its leaf hash — then, in one transaction, takes the trail's advisory lock
(``pg_advisory_xact_lock``, released at commit), checks again which keys are new, numbers them from
``MAX(leaf_index) + 1``, writes them with ``COPY``, extends the tree and commits. Leaf indexes are
therefore contiguous and in commit order whatever the number of writers, and ``entries.key`` is
UNIQUE, so an event delivered to two collectors at once is stored once: the second finds the key
under the lock (or, if something wrote around the lock, fails on the constraint and is retried).

Connections come from a ``psycopg_pool.ConnectionPool``: a store holds one for its own statements
(autocommit outside ``transaction()``), ``reopen()`` takes another from the same pool.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import Connection, sql
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from kubetrail.errors import StoreError, StoreNotFoundError
from kubetrail.record import Record
from kubetrail.store import postgres_schema
from kubetrail.store.api import AppendResult, Done, PendingAppend
from kubetrail.store.base import StoreBase, first_of_each_key
from kubetrail.store.db import Cursor, register_engine
from kubetrail.store.rows import INSERT_COLUMNS, row
from kubetrail.trail.protocols import Problem

register_engine(psycopg.DatabaseError, psycopg.Error)

POOL_MAX = 4
COPY_MIN_ROWS = 64  # ``insert_new_rows``: fewer go by ``executemany`` (the temporary table costs two statements)
STREAM_ROWS = 2000
_cursor_ids = itertools.count()


@functools.lru_cache(maxsize=512)
def _pg(text: str) -> str:
    """The repositories' ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return text.replace("%", "%%").replace("?", "%s")


class _PgDb:
    """``kubetrail.store.db.Db`` over a psycopg connection."""

    def __init__(self, conn: Connection[Any]) -> None:
        self.conn = conn

    def execute(self, text: str, parameters: Sequence[Any] = (), /) -> Cursor:
        return self.conn.execute(_pg(text), tuple(parameters))  # type: ignore[arg-type, return-value]

    def close(self) -> None:
        self.conn.close()

    def executemany(self, text: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        cur = self.conn.cursor()
        rows = list(parameters)
        if rows:
            cur.executemany(_pg(text), rows)  # type: ignore[arg-type]
        return cur  # type: ignore[return-value]


class _Engine:
    dialect = "postgres"

    def __init__(self, conn: Connection[Any], pool: _Pool) -> None:
        self.conn = conn
        self.pool = pool
        self.db = _PgDb(conn)
        self._temporary: bool | None = None  # ``_may_create_temporary``, once asked

    def has_column(self, table: str, column: str) -> bool:
        return self.conn.execute("SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = "
                                 "current_schema() AND table_name = %s AND column_name = %s)",
                                 (table, column)).fetchone()[0]  # type: ignore[index, no-any-return]

    def has_table(self, name: str) -> bool:
        return self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]  # type: ignore[index, no-any-return]

    def lock(self, name: str) -> None:
        self.conn.execute(f"SELECT pg_advisory_xact_lock({postgres_schema.lock_key(name)})")  # type: ignore[arg-type]

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table),
                                                              sql.SQL(", ").join(map(sql.Identifier, columns)))
        with self.conn.cursor().copy(statement) as copy:
            for r in rows:
                copy.write_row(r)

    def insert_new_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                        key: Sequence[str]) -> None:
        """Within a transaction (the inventory's step), by a temporary table of ``columns`` made once per
        session: ``COPY`` into it, then one statement moves its rows (``DELETE ... RETURNING``, so it is
        empty again whatever follows) into ``table``. Outside one (the rows and the move would be separate
        transactions), for a few rows and for a role that may not create temporary tables, ``executemany``."""
        if not rows:
            return
        names = sql.SQL(", ").join(map(sql.Identifier, columns))
        conflict = sql.SQL(", ").join(map(sql.Identifier, key))
        if (len(rows) < COPY_MIN_ROWS or self.conn.info.transaction_status != TransactionStatus.INTRANS
                or not self._may_create_temporary()):
            self.conn.cursor().executemany(
                sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO NOTHING").format(
                    sql.Identifier(table), names, sql.SQL(", ").join(sql.Placeholder() * len(columns)), conflict),
                rows)
            return
        staging = sql.Identifier(f"kt_new_{table}")
        self.conn.execute(sql.SQL("CREATE TEMPORARY TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS "
                                  "SELECT {} FROM {} WITH NO DATA").format(staging, names, sql.Identifier(table)))
        with self.conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(staging, names)) as copy:
            for r in rows:
                copy.write_row(r)
        self.conn.execute(sql.SQL("WITH moved AS (DELETE FROM {} RETURNING {}) INSERT INTO {} ({}) SELECT {} "
                                  "FROM moved ON CONFLICT ({}) DO NOTHING").format(
            staging, names, sql.Identifier(table), names, names, conflict))

    def _may_create_temporary(self) -> bool:
        """Whether this role may create temporary tables: PostgreSQL grants it to every role unless the
        database's owner revoked it (a hardened database); without it ``insert_new_rows`` goes row by row
        rather than failing the transaction it is in. Asked once per engine."""
        if self._temporary is None:
            row_ = self.conn.execute("SELECT has_database_privilege(current_database(), 'TEMPORARY')").fetchone()
            self._temporary = bool(row_ and row_[0])
        return self._temporary

    def size_bytes(self) -> int:
        row_ = self.conn.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'").fetchone()
        return int(row_[0]) if row_ else 0

    def reclaim(self) -> bool:
        """``VACUUM``: the freed space is reused by later rows; the files keep their size (only ``VACUUM
        FULL`` shrinks them, locking the table: docs/storage.md)."""
        self.conn.execute("VACUUM (ANALYZE) entries")
        return False

    def stream(self, text: str, parameters: Sequence[Any] = ()) -> Iterator[Any]:
        """Rows in chunks, leaving the store's connection free for whatever the reader does per row
        (load a zstd dictionary, open a transaction): inside a transaction (a snapshot) a server-side
        cursor on it, FETCHed in chunks; outside, chunked single-row mode on a second pooled connection."""
        if self.conn.info.transaction_status == TransactionStatus.INTRANS:
            with self.conn.cursor(name=f"kt_{next(_cursor_ids)}") as cur:
                cur.itersize = STREAM_ROWS
                cur.execute(_pg(text), tuple(parameters))  # type: ignore[arg-type]
                yield from cur
            return
        with self.pool.pool.connection() as other:
            yield from other.cursor().stream(_pg(text), tuple(parameters), size=STREAM_ROWS)  # type: ignore[arg-type]


class _Pool:
    """One pool per URL in a process, shared by every store open on it (``reopen()``, a server that
    opens a store per request while one stays open): opening a store takes a connection, closing it
    gives the connection back, and the last close closes the pool."""

    _by_url: dict[str, _Pool] = {}
    _guard = threading.Lock()

    def __init__(self, url: str) -> None:
        self.url = url
        self.pool: ConnectionPool[Connection[Any]] = ConnectionPool(
            url, min_size=1, max_size=POOL_MAX, kwargs={"autocommit": True}, open=False, name="kubetrail",
            num_workers=1)
        self.users = 0

    @classmethod
    def take(cls, url: str) -> tuple[_Pool, Connection[Any]]:
        with cls._guard:
            pool = cls._by_url.get(url)
            if pool is None:
                pool = cls._by_url[url] = cls(url)
                try:
                    pool.pool.open(wait=True, timeout=30)
                except BaseException:
                    del cls._by_url[url]
                    pool.pool.close()
                    raise
            pool.users += 1
        try:
            return pool, pool.pool.getconn()
        except BaseException:
            pool.give(None)
            raise

    def give(self, conn: Connection[Any] | None) -> None:
        if conn is not None:
            if conn.info.transaction_status != TransactionStatus.IDLE:
                conn.close()  # a connection left mid-statement is not handed out again
            self.pool.putconn(conn)
        with self._guard:
            self.users -= 1
            if self.users == 0 and self._by_url.get(self.url) is self:
                del self._by_url[self.url]
                self.pool.close()


class PostgresStore(StoreBase):
    def __init__(self, pool: _Pool, conn: Connection[Any], url: str, data_dir: str, readonly: bool) -> None:
        self._pool = pool
        self._conn = conn
        self.url = url
        self.data_dir = data_dir
        self.readonly = readonly
        self._closed = False
        self._replaying = True  # the previous append had duplicates (as SqliteStore's): look keys up first
        self._setup(_Engine(conn, pool))

    @classmethod
    def open(cls, url: str, data_dir: str, create: bool = True, readonly: bool = False) -> PostgresStore:
        """Connect, and migrate unless ``readonly`` (a read-only session: nothing can be written)."""
        try:
            pool, conn = _Pool.take(url)
        except Exception as exc:  # noqa: BLE001 - pool timeouts and connection errors alike
            raise StoreError(f"cannot connect to the PostgreSQL store {_redact(url)}: {exc}") from exc
        try:
            conn.execute("SET default_transaction_read_only = " + ("on" if readonly else "off"))  # type: ignore[arg-type]
            if readonly:
                done = postgres_schema.applied(conn)
                if not done:
                    raise StoreNotFoundError(f"no kubetrail store at {_redact(url)} (run `kubetrail ingest` first)")
                postgres_schema.check_version(done)
            else:
                if not create and not postgres_schema.applied(conn):
                    raise StoreNotFoundError(f"no kubetrail store at {_redact(url)} (run `kubetrail ingest` first)")
                postgres_schema.migrate(conn)
            return cls(pool, conn, url, data_dir, readonly)
        except psycopg.Error as exc:
            pool.give(conn)
            raise StoreError(f"cannot open the PostgreSQL store {_redact(url)}: {exc}") from exc
        except BaseException:
            pool.give(conn)
            raise

    def reopen(self) -> PostgresStore:
        return PostgresStore.open(self.url, self.data_dir, create=False, readonly=self.readonly)

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.give(self._conn)

    @contextmanager
    def transaction(self) -> Iterator[PostgresStore]:
        with self._conn.transaction():
            yield self

    @contextmanager
    def snapshot(self) -> Iterator[PostgresStore]:
        """REPEATABLE READ, READ ONLY: every read inside sees the state of its first statement."""
        self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield self
        finally:
            self._conn.execute("ROLLBACK")

    # -- writing -------------------------------------------------------------------------------
    def append(self, records: Sequence[Record], positions: dict[str, str] | None = None) -> AppendResult:
        """Store the records whose keys are new, in order, and the source positions, atomically."""
        unique = first_of_each_key(records)
        # Looked up before the transaction only while duplicates are likely (the last append had some), so
        # that a replay does not compress and build rows it then drops; the look-up under the lock below is
        # what decides either way (as SQLite's append, which looks up only then too: a round trip and two
        # 2,000-key arrays per batch otherwise, ~7 ms a batch on a local server).
        known = self._existing([r.key for r in unique]) if self._replaying else set()
        todo = [r for r in unique if r.key not in known]
        bodies = self.codec.compress_records(todo)  # a new dictionary commits on its own
        prepared = {r.key: row(r, bodies[i]) for i, r in enumerate(todo)}
        try:
            with self.transaction():
                self.trail.lock()  # appends and signing, one at a time, until the commit
                raced = self._existing(list(prepared)) if prepared else set()
                fresh = [r for r in todo if r.key not in raced]
                start = self.trail.entries_size()
                for i, r in enumerate(fresh):
                    r.leaf_index = start + i
                self._engine.insert_rows("entries", INSERT_COLUMNS,
                                         [(r.leaf_index, *prepared[r.key][1:]) for r in fresh])
                for hook in self.append_hooks:
                    hook(self, fresh)
                if positions:
                    now = time.time_ns()
                    self._engine.db.executemany(
                        "INSERT INTO source_positions (source, position, updated_ns) VALUES (?, ?, ?) ON CONFLICT "
                        "(source) DO UPDATE SET position = excluded.position, updated_ns = excluded.updated_ns",
                        [(s, p, now) for s, p in positions.items()])
                dups = len(records) - len(fresh)
                self._bump({"stored": len(fresh), "duplicates": dups})
            self._replaying = dups > 0
        except BaseException:
            for r in records:
                r.leaf_index = None
            raise
        return AppendResult(stored=fresh, duplicates=dups)

    def append_deferred(self, records: Sequence[Record], positions: dict[str, str] | None = None) -> PendingAppend:
        """``append``, committed before it returns (the commit is one round trip here, not worth a thread)."""
        return Done(self.append(records, positions))

    def _existing(self, keys: list[str]) -> set[str]:
        """Which keys are an entry's key or a key alias (``store rekey``)."""
        found: set[str] = set()
        for i in range(0, len(keys), 5000):
            chunk = keys[i:i + 5000]
            found.update(k for (k,) in self._conn.execute(
                "SELECT key FROM entries WHERE key = ANY(%s) UNION ALL SELECT alias FROM key_aliases "
                "WHERE alias = ANY(%s)", (chunk, chunk)))
        return found

    def _bump(self, deltas: dict[str, int]) -> None:
        self._engine.db.executemany(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
            "SET value = counters.value + excluded.value", [(k, v) for k, v in deltas.items() if v])

    def count(self, name: str, n: int) -> None:
        """Add to a named counter outside a batch (e.g. rejects)."""
        with self.transaction():
            self._bump({name: n})

    # -- reading -------------------------------------------------------------------------------
    def deep_check(self) -> list[Problem]:
        return postgres_schema.deep_check(self._conn)


def _redact(url: str) -> str:
    """The URL without a password (``postgresql://user:SECRET@host`` -> ``postgresql://user:***@host``)."""
    head, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    cred, _, host = rest.partition("@")
    user = cred.split(":", 1)[0]
    return f"{head}://{user}{':***' if ':' in cred else ''}@{host}"
