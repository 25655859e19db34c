"""The small database surface the repositories are written against, and engine errors.

Repositories (store/trail.py, alerts.py, credentials.py, …) hold SQL that both engines accept,
with ``?`` placeholders, and run it through a ``Db``: a ``sqlite3.Connection`` as it is, or the
PostgreSQL adapter. What differs between engines is asked of the ``Engine`` (``has_table``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from kubetrail.errors import StoreDamagedError

# Engine exceptions that mean "this database cannot be read" (a damaged file, a doctored schema).
# The CLI prints them as one line; nothing outside the store names an engine's exception types.
DAMAGED_ERRORS: tuple[type[BaseException], ...] = (sqlite3.DatabaseError,)
# Every engine exception (busy, locked, connection lost …): a background thread retries on these.
ENGINE_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error,)


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

    def has_table(self, name: str) -> bool: ...


def store_failure(exc: BaseException) -> str:
    """What an engine error (one of ``DAMAGED_ERRORS``) means for the user: a full disk is not a damaged store."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL:
        return ("the disk is full: the store could not be written (a failed write leaves the store as it was); "
                "free space and run the command again")
    if code is not None and code & 0xFF == sqlite3.SQLITE_IOERR:
        return (f"the store could not be written or read ({exc}): the disk may be full, over quota or failing "
                "(a failed write leaves the store as it was)")
    return f"the store cannot be read: {exc} (see `kubetrail verify --deep`)"


def engine_fault(exc: BaseException) -> bool:
    """An engine error that is the database's or the machine's fault (busy, full, damaged), not the
    fault of the values being written (those are retried alone or rejected by the pipeline)."""
    return isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.InterfaceError | sqlite3.DataError | sqlite3.IntegrityError | sqlite3.ProgrammingError)


def damaged(exc: BaseException, what: str = "the store") -> StoreDamagedError:
    return StoreDamagedError(f"{what} cannot be read: {exc}")


def placeholders(n: int) -> str:
    return ",".join("?" * n)
