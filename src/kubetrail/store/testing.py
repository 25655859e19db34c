"""Raw SQL on a store's own connection, for tests and tamper drills only (never for kubetrail itself).

Tests assert on tables and doctor rows the way an attacker with write access would; they reach the
database through this one door, so nothing else needs a connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubetrail.store.db import Cursor


def execute(store: Any, sql: str, params: Sequence[Any] = ()) -> Cursor:
    """Run one statement (``?`` placeholders, either engine) on ``store``'s connection (autocommit
    outside a transaction)."""
    return store._engine.db.execute(sql, params)  # noqa: SLF001 - the deliberate back door


def executemany(store: Any, sql: str, rows: Sequence[Sequence[Any]]) -> Cursor:
    """Many rows at once (benchmarks that build large stores without the ingest path)."""
    return store._engine.db.executemany(sql, rows)  # noqa: SLF001
