"""Detector memory in the store (``detector_state``), so a restart keeps baselines and windows.

Values are JSON owned by each detector; ``put(…, None)`` deletes the key. Reads go through an in-memory cache (a miss asks the
database once); writes are buffered and written by ``flush`` in one transaction after each batch,
which the detection consumer calls right after the batch's alerts are recorded.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from kubetrail.store.api import Store

_ABSENT = object()


class StateStore:
    def __init__(self, store: Store | None) -> None:
        self.store = store  # None: memory only (``kubetrail rules``-style dry runs, tests)
        self._cache: dict[tuple[str, str], Any] = {}
        self._dirty: set[tuple[str, str]] = set()

    def get(self, detector: str, key: str, default: Any = None) -> Any:
        k = (detector, key)
        value = self._cache.get(k, _ABSENT)
        if value is _ABSENT:
            value = None
            if self.store is not None:
                raw = self.store.state.get(detector, key)
                value = orjson.loads(raw) if raw is not None else None
            self._cache[k] = value
        return default if value is None else value

    def put(self, detector: str, key: str, value: Any) -> None:
        self._cache[(detector, key)] = value
        self._dirty.add((detector, key))

    def keys(self, detector: str) -> list[str]:
        """Every key a detector has (loads them all; for small key sets such as sources)."""
        if self.store is not None:
            for key, value in self.store.state.items(detector):
                self._cache.setdefault((detector, key), orjson.loads(value))
        return sorted(k for d, k in self._cache if d == detector and self._cache[(d, k)] is not None)

    def flush(self) -> int:
        """Write what changed since the last flush, in one transaction; returns the row count."""
        if not self._dirty or self.store is None:
            self._dirty.clear()
            return 0
        now = time.time_ns()
        dirty = sorted(self._dirty)
        gone = [k for k in dirty if self._cache[k] is None]
        rows = [(d, k, orjson.dumps(self._cache[(d, k)]).decode(), now) for d, k in dirty
                if self._cache[(d, k)] is not None]
        with self.store.transaction() as tx:
            tx.state.write(gone, rows)
        self._dirty.clear()
        return len(dirty)
