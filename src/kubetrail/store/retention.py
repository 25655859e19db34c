"""Retention: delete old bodies, never entries or leaf hashes, so the trail stays verifiable.

Each run is recorded in ``retention_runs`` (migration 0006) in the transaction that prunes: the age
cutoff, the last leaf index the size rule pruned, and the store's size then; ``verify`` accepts a
NULL body only where a recorded run explains it (``kubetrail.trail.retention.RetentionRuns``).
Space is returned to the file system by SQLite's own reuse of free pages (or a ``VACUUM`` the
operator runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from kubetrail.store.api import RetentionResult
from kubetrail.store.db import Engine


class RetentionTables:
    def __init__(self, engine: Engine, transaction: Callable[[], AbstractContextManager[Any]]) -> None:
        self.db = engine.db
        self._transaction = transaction

    def apply(self, before_ns: int | None, max_bytes: int | None, dry_run: bool = False) -> RetentionResult:
        """Null the bodies of entries older than ``before_ns``, then the oldest ones beyond ``max_bytes``."""
        db = self.db
        res = RetentionResult()
        last = -1
        if before_ns is not None:
            row = db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM entries "
                             "WHERE body IS NOT NULL AND time < ?", (before_ns,)).fetchone()
            res.pruned, res.bytes_freed = int(row[0]), int(row[1])
        total, count = db.execute("SELECT COALESCE(SUM(LENGTH(body)), 0), COUNT(*) FROM entries "
                                  "WHERE body IS NOT NULL").fetchone()
        left = int(total) - res.bytes_freed
        if max_bytes is not None and left > max_bytes:
            cur = db.execute("SELECT leaf_index, LENGTH(body), time FROM entries WHERE body IS NOT NULL "
                             "ORDER BY leaf_index")
            try:
                for idx, n, t in cur:
                    if left <= max_bytes:
                        break
                    last = idx
                    if before_ns is not None and t < before_ns:
                        continue  # already counted by the age rule
                    left -= n
                    res.pruned += 1
                    res.bytes_freed += n
            finally:
                cur.close()  # an unfinished read would hold SQLite's read lock into the write below
        res.bytes_left = left
        res.bodies_left = int(count) - res.pruned
        if dry_run:
            return res
        with self._transaction():
            size = db.execute("SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM entries").fetchone()[0]
            pruned = 0
            if before_ns is not None:
                pruned += db.execute("UPDATE entries SET body = NULL WHERE body IS NOT NULL AND time < ?",
                                     (before_ns,)).rowcount
            if last >= 0:
                pruned += db.execute("UPDATE entries SET body = NULL WHERE body IS NOT NULL AND leaf_index <= ?",
                                     (last,)).rowcount
            if pruned:
                db.execute("INSERT INTO retention_runs (run_ns, before_ns, upto_index, size, pruned) "
                           "VALUES (?, ?, ?, ?, ?)",
                           (time.time_ns(), before_ns, last if last >= 0 else None, size, pruned))
        return res
