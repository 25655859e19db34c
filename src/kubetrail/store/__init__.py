"""The store: every SQL statement and every transaction of kubetrail (DESIGN.md "Storage").

Other packages open a store with ``open_store`` and use the typed repositories described in
``kubetrail.store.api``; they never see a connection. ``damaged_errors()`` are the engine
exceptions that mean "the database cannot be read" (the CLI prints them as one line).

A store location is one of (docs/storage.md):

* a data directory: the SQLite file ``DIR/kubetrail.db`` (the embedded default);
* ``sqlite:///ABSOLUTE/PATH.db`` or ``sqlite:RELATIVE/PATH.db``: that SQLite file;
* ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?…]`` (libpq's URI): a PostgreSQL database
  that several collectors can write at once.
"""

from __future__ import annotations

import os

from kubetrail.errors import StoreError
from kubetrail.store.api import AppendResult, Repos, Store
from kubetrail.store.db import damaged_errors, engine_errors, engine_fault, store_failure
from kubetrail.store.queries import LogFilters, QueryFilters

__all__ = ["AppendResult", "LogFilters", "QueryFilters", "Repos", "Store", "damaged_errors", "engine_errors", "engine_fault",
           "is_url", "open_store", "sqlite_path", "store_failure"]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_url(location: str) -> bool:
    return location.startswith(("sqlite:", *POSTGRES_SCHEMES))


def sqlite_path(url: str) -> str:
    """``sqlite:///abs/x.db`` (or ``sqlite:////abs/x.db``) -> ``/abs/x.db``; ``sqlite:rel/x.db`` -> ``rel/x.db``."""
    rest = url[len("sqlite:"):]
    if rest.startswith("//"):
        rest = rest[2:]
        if not rest.startswith("/"):
            raise StoreError(f"bad store URL {url!r}: want sqlite:///ABSOLUTE/PATH.db or sqlite:RELATIVE/PATH.db")
        rest = "/" + rest.lstrip("/")
    if not rest or rest.endswith("/"):
        raise StoreError(f"bad store URL {url!r}: it names no database file")
    return rest


def default_data_dir(location: str, data_dir: str | None) -> str:
    """Where the trail key, rejects and detect.yaml live: ``data_dir`` if given, else the directory of
    a SQLite store (its file's directory), else ./kubetrail-data."""
    if data_dir:
        return data_dir
    if location.startswith("sqlite:"):
        return os.path.dirname(sqlite_path(location)) or "."
    if is_url(location):
        return "./kubetrail-data"
    return location


def open_store(location: str, create: bool = True, readonly: bool = False, data_dir: str | None = None) -> Store:
    """Open a store (created and migrated unless ``readonly`` or not ``create``); see the module doc
    for ``location``. ``data_dir`` (for the trail key, rejects, detect.yaml) defaults per
    ``default_data_dir``."""
    where = default_data_dir(location, data_dir)
    if location.startswith(POSTGRES_SCHEMES):
        try:
            from kubetrail.store.postgres import PostgresStore
        except ImportError as exc:  # pragma: no cover - psycopg is a dependency
            raise StoreError(f"a PostgreSQL store needs psycopg: {exc}") from exc
        return PostgresStore.open(location, where, create=create, readonly=readonly)
    from kubetrail.store.sqlite import SqliteStore

    if location.startswith("sqlite:"):
        return SqliteStore.open(where, create=create, readonly=readonly, path=sqlite_path(location))
    return SqliteStore.open(location, create=create, readonly=readonly)


def __getattr__(name: str) -> object:
    """``DAMAGED_ERRORS``/``ENGINE_ERRORS``: the tuples as they are now (an engine adds its own when
    it is first imported), for ``except`` clauses and ``isinstance`` written against the old names."""
    if name == "DAMAGED_ERRORS":
        return damaged_errors()
    if name == "ENGINE_ERRORS":
        return engine_errors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
