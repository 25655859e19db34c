"""Detector memory in the store (``detector_state``), so a restart keeps baselines and windows.

Values are JSON owned by each detector; ``put(…, None)`` deletes the key. Reads go through an in-memory cache (a miss asks the
database once); writes are buffered and written by ``flush`` in one transaction after each batch,
which the detection consumer calls right after the batch's alerts are recorded.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import orjson

_ABSENT = object()


class StateStore:
    def __init__(self, connection: sqlite3.Connection | None) -> None:
        self.conn = connection  # None: memory only (``kubetrail rules``-style dry runs, tests)
        self._cache: dict[tuple[str, str], Any] = {}
        self._dirty: set[tuple[str, str]] = set()

    def get(self, detector: str, key: str, default: Any = None) -> Any:
        k = (detector, key)
        value = self._cache.get(k, _ABSENT)
        if value is _ABSENT:
            value = None
            if self.conn is not None:
                row = self.conn.execute("SELECT value FROM detector_state WHERE detector = ? AND key = ?",
                                        k).fetchone()
                value = orjson.loads(row[0]) if row else None
            self._cache[k] = value
        return default if value is None else value

    def put(self, detector: str, key: str, value: Any) -> None:
        self._cache[(detector, key)] = value
        self._dirty.add((detector, key))

    def keys(self, detector: str) -> list[str]:
        """Every key a detector has (loads them all; for small key sets such as sources)."""
        if self.conn is not None:
            for key, value in self.conn.execute("SELECT key, value FROM detector_state WHERE detector = ?",
                                                (detector,)):
                self._cache.setdefault((detector, key), orjson.loads(value))
        return sorted(k for d, k in self._cache if d == detector and self._cache[(d, k)] is not None)

    def flush(self) -> int:
        """Write what changed since the last flush, in one transaction; returns the row count."""
        if not self._dirty or self.conn is None:
            self._dirty.clear()
            return 0
        now = time.time_ns()
        dirty = sorted(self._dirty)
        gone = [k for k in dirty if self._cache[k] is None]
        rows = [(d, k, orjson.dumps(self._cache[(d, k)]).decode(), now) for d, k in dirty
                if self._cache[(d, k)] is not None]
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany("DELETE FROM detector_state WHERE detector = ? AND key = ?", gone)
            self.conn.executemany(
                "INSERT INTO detector_state (detector, key, value, updated_ns) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (detector, key) DO UPDATE SET value = excluded.value, updated_ns = excluded.updated_ns",
                rows)
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self._dirty.clear()
        return len(dirty)
