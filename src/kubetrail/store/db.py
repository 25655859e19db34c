"""The small database surface the repositories are written against, and engine errors.

Repositories (store/trail.py, alerts.py, credentials.py, …) hold SQL that both engines accept,
with ``?`` placeholders, and run it through a ``Db``: a ``sqlite3.Connection`` as it is, or the
PostgreSQL adapter. What differs between engines is asked of the ``Engine`` (``has_table``).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from kubetrail.errors import StoreDamagedError

# Engine exceptions that mean "this database cannot be read" (a damaged file, a doctored schema),
# and every engine exception (busy, locked, connection lost …: a background thread retries on
# these). The CLI prints them as one line; nothing outside the store names an engine's exception
# types. psycopg is imported only with a PostgreSQL store (it costs ~0.2 s), which registers its own.
_DAMAGED: list[type[BaseException]] = [sqlite3.DatabaseError]
_ENGINE: list[type[BaseException]] = [sqlite3.Error]


def damaged_errors() -> tuple[type[BaseException], ...]:
    """For ``except damaged_errors() as exc:`` (evaluated when an exception is raised)."""
    return tuple(_DAMAGED)


def engine_errors() -> tuple[type[BaseException], ...]:
    return tuple(_ENGINE)


def register_engine(damaged: type[BaseException], every: type[BaseException]) -> None:
    if damaged not in _DAMAGED:
        _DAMAGED.append(damaged)
        _ENGINE.append(every)


def _psycopg() -> Any:
    return sys.modules.get("psycopg")


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...

    def close(self) -> None: ...


class Db(Protocol):
    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


class Engine(Protocol):
    """What repositories ask of the engine beyond portable SQL."""

    db: Db
    dialect: str  # "sqlite" | "postgres": the few spellings that differ (queries.py)

    def has_table(self, name: str) -> bool: ...

    def has_column(self, table: str, column: str) -> bool: ...

    def stream(self, sql: str, parameters: Sequence[Any] = ()) -> Iterator[Any]:
        """Rows of a large result without holding them all in memory."""
        ...

    def size_bytes(self) -> int:
        """The store's real size: the SQLite file (pages), PostgreSQL's tables with indexes and TOAST."""
        ...

    def reclaim(self) -> bool:
        """Give the space of deleted data back; True when ``size_bytes`` then shrinks (SQLite)."""
        ...

    def lock(self, name: str) -> None:
        """Serialise the holders of lock ``name`` until the current transaction ends (other processes
        included). SQLite's write transaction is exclusive already; PostgreSQL takes an advisory lock."""
        ...

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert new rows, as ``INSERT`` would (a row already there fails the statement and the
        transaction): the way each engine takes many rows fastest — ``executemany`` on SQLite, ``COPY``
        on PostgreSQL, where ``executemany`` is a statement per row (2,000 rows: 21 ms against 8.7)."""
        ...

    def insert_new_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                        key: Sequence[str]) -> None:
        """Insert the rows whose ``key`` (a unique key of ``table``) no stored row has, as ``INSERT ... ON
        CONFLICT (key) DO NOTHING`` would (of rows repeating a key among themselves one goes in, which one
        unsaid: the ledger never queues a key twice): ``executemany`` on SQLite; on PostgreSQL
        ``COPY`` into a temporary table, then one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` (2,000
        credential uses: 37 ms against 74 by ``executemany``, bench/RESULTS.md "Fourteenth session")."""
        ...


def store_failure(exc: BaseException) -> str:
    """What an engine error (one of ``damaged_errors()``) means for the user: a full disk is not a damaged store."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL:
        return ("the disk is full: the store could not be written (a failed write leaves the store as it was); "
                "free space and run the command again")
    if code is not None and code & 0xFF == sqlite3.SQLITE_IOERR:
        return (f"the store could not be written or read ({exc}): the disk may be full, over quota or failing "
                "(a failed write leaves the store as it was)")
    pg = _psycopg()
    if pg is not None and isinstance(exc, pg.OperationalError):
        return f"the PostgreSQL store cannot be reached or used: {exc}"
    return f"the store cannot be read: {exc} (see `kubetrail verify --deep`)"


def engine_fault(exc: BaseException) -> bool:
    """An engine error that is the database's or the machine's fault (busy, full, damaged, gone), not
    the fault of the values being written (those are retried alone or rejected by the pipeline)."""
    pg = _psycopg()
    if pg is not None and isinstance(exc, pg.Error):
        return not isinstance(exc, pg.DataError | pg.IntegrityError | pg.ProgrammingError)
    return isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.InterfaceError | sqlite3.DataError | sqlite3.IntegrityError | sqlite3.ProgrammingError)


def damaged(exc: BaseException, what: str = "the store") -> StoreDamagedError:
    return StoreDamagedError(f"{what} cannot be read: {exc}")


def placeholders(n: int) -> str:
    return ",".join("?" * n)
