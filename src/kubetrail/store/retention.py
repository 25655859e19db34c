"""Retention: delete old bodies, never entries or leaf hashes, so the trail stays verifiable; then give
the space back.

Each run is recorded in ``retention_runs`` (migration 0006) in the transaction that prunes: the age
cutoff, the last leaf index the size rule pruned, and the store's size then; ``verify`` accepts a
NULL body only where a recorded run explains it (``kubetrail.trail.retention.RetentionRuns``).

``max_bytes`` caps the store's real size (``Engine.size_bytes``: the SQLite file, PostgreSQL's
tables with indexes and TOAST). What cannot be pruned (entries without bodies, indexes, the tree)
is taken from the budget; the oldest bodies go until the rest fits; then ``Engine.reclaim`` gives
the space back (SQLite: ``VACUUM``, so the file shrinks; PostgreSQL: ``VACUUM``, so the space is
reused but the files keep their size: docs/storage.md). On SQLite the size is measured again and,
if the estimate left it above the cap, more bodies go (at most ``ROUNDS`` times).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from kubetrail.store.api import RetentionResult
from kubetrail.store.db import Engine

ROUNDS = 3


class RetentionTables:
    def __init__(self, engine: Engine, transaction: Callable[[], AbstractContextManager[Any]]) -> None:
        self.engine = engine
        self.db = engine.db
        self._transaction = transaction

    def apply(self, before_ns: int | None, max_bytes: int | None, dry_run: bool = False) -> RetentionResult:
        """Null the bodies of entries older than ``before_ns``, then the oldest ones until the store fits
        in ``max_bytes``; give the space back."""
        res = RetentionResult()
        cap = max_bytes
        for round_ in range(ROUNDS):
            step = self._round(before_ns if round_ == 0 else None, cap, dry_run)
            res.pruned += step.pruned
            res.bytes_freed += step.bytes_freed
            res.bodies_left, res.bytes_left = step.bodies_left, step.bytes_left
            if dry_run:
                break
            shrinks = self.engine.reclaim() if step.pruned else True
            res.db_bytes = self.engine.size_bytes()
            if max_bytes is None or cap is None or not shrinks or res.db_bytes <= max_bytes or not res.bodies_left:
                break
            cap -= res.db_bytes - max_bytes  # what the estimate missed (page slack): prune that much more
        return res

    def _round(self, before_ns: int | None, max_bytes: int | None, dry_run: bool) -> RetentionResult:
        db = self.db
        res = RetentionResult()
        last = -1
        if before_ns is not None:
            row = db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM entries "
                             "WHERE body IS NOT NULL AND time < ?", (before_ns,)).fetchone()
            res.pruned, res.bytes_freed = int(row[0]), int(row[1])
        total, count = (int(v) for v in db.execute("SELECT COALESCE(SUM(LENGTH(body)), 0), COUNT(*) FROM entries "
                                                   "WHERE body IS NOT NULL").fetchone())
        left = total - res.bytes_freed
        if max_bytes is not None:
            fixed = max(self.engine.size_bytes() - total, 0)  # stays whatever is pruned
            budget = max_bytes - fixed
            if left > budget:
                cur = db.execute("SELECT leaf_index, LENGTH(body), time FROM entries WHERE body IS NOT NULL "
                                 "ORDER BY leaf_index")
                try:
                    for idx, n, t in cur:
                        if left <= budget:
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
        res.bodies_left = count - res.pruned
        if dry_run or not res.pruned:
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
