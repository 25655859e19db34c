"""The store: every SQL statement and every transaction of kubetrail (DESIGN.md "Storage").

Other packages open a store with ``open_store`` and use the typed repositories described in
``kubetrail.store.api``; they never see a connection. ``DAMAGED_ERRORS`` are the engine
exceptions that mean "the database file cannot be read" (the CLI prints them as one line).
"""

from __future__ import annotations

from kubetrail.store.api import AppendResult, Repos, Store
from kubetrail.store.db import DAMAGED_ERRORS, ENGINE_ERRORS, engine_fault, store_failure
from kubetrail.store.queries import LogFilters, QueryFilters

__all__ = ["DAMAGED_ERRORS", "ENGINE_ERRORS", "AppendResult", "LogFilters", "QueryFilters", "Repos", "Store",
           "engine_fault", "open_store", "store_failure"]


def open_store(data_dir: str, create: bool = True, readonly: bool = False) -> Store:
    """Open the store of a data directory (created and migrated unless ``readonly`` or not ``create``)."""
    from kubetrail.store.sqlite import SqliteStore

    return SqliteStore.open(data_dir, create=create, readonly=readonly)
