"""Retention: delete old bodies, never entries or leaf hashes, so the trail stays verifiable.

A pruned entry keeps its header (with the body's SHA-256) and its leaf; ``verify`` counts it as
pruned, not tampered. Space is returned to the file system by SQLite's own reuse of free pages (or a
``VACUUM`` the operator runs).

Each run is recorded in ``retention_runs`` (migration 0006) in the transaction that prunes: the age
cutoff, the last leaf index the size rule pruned, and the store's size then. ``verify`` accepts a
NULL body only where a recorded run explains it (``RetentionRuns.explains``), so a body deleted with a
plain ``UPDATE`` is reported as modified instead of passing for retention.
"""

from __future__ import annotations

import bisect
import re
import sqlite3
import time
from dataclasses import dataclass

from kubetrail.errors import TrailError

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str) -> int:
    """'500M', '10G', '1024', '2GiB' -> bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise TrailError(f"bad size {text!r}: want a number with an optional K, M, G or T suffix")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


@dataclass
class RetentionResult:
    pruned: int = 0
    bytes_freed: int = 0
    bodies_left: int = 0
    bytes_left: int = 0


def apply_retention(conn: sqlite3.Connection, before_ns: int | None = None, max_bytes: int | None = None,
                    dry_run: bool = False) -> RetentionResult:
    """Null the bodies of entries older than ``before_ns``, then the oldest ones beyond ``max_bytes``."""
    res = RetentionResult()
    last = -1
    if before_ns is not None:
        row = conn.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0), COALESCE(MAX(leaf_index), -1) "
                           "FROM entries WHERE body IS NOT NULL AND time < ?", (before_ns,)).fetchone()
        res.pruned, res.bytes_freed = int(row[0]), int(row[1])
    total, count = conn.execute("SELECT COALESCE(SUM(LENGTH(body)), 0), COUNT(*) FROM entries "
                                "WHERE body IS NOT NULL").fetchone()
    left = int(total) - res.bytes_freed
    if max_bytes is not None and left > max_bytes:
        cur = conn.execute("SELECT leaf_index, LENGTH(body), time FROM entries WHERE body IS NOT NULL "
                           "ORDER BY leaf_index")
        for idx, n, t in cur:
            if left <= max_bytes:
                break
            last = idx
            if before_ns is not None and t < before_ns:
                continue  # already counted by the age rule
            left -= n
            res.pruned += 1
            res.bytes_freed += n
        cur.close()
    res.bytes_left = left
    res.bodies_left = int(count) - res.pruned
    if dry_run:
        return res
    conn.execute("BEGIN IMMEDIATE")
    try:
        size = conn.execute("SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM entries").fetchone()[0]
        pruned = 0
        if before_ns is not None:
            pruned += conn.execute("UPDATE entries SET body = NULL WHERE body IS NOT NULL AND time < ?",
                                   (before_ns,)).rowcount
        if last >= 0:
            pruned += conn.execute("UPDATE entries SET body = NULL WHERE body IS NOT NULL AND leaf_index <= ?",
                                   (last,)).rowcount
        if pruned:
            conn.execute("INSERT INTO retention_runs (run_ns, before_ns, upto_index, size, pruned) "
                         "VALUES (?, ?, ?, ?, ?)",
                         (time.time_ns(), before_ns, last if last >= 0 else None, size, pruned))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return res


class RetentionRuns:
    """The recorded runs, asked per pruned body: did some run prune the body at this index and time?

    A run explains index ``i`` with event time ``t`` when ``i`` was in the store when it ran
    (``i < size``) and its age rule (``t < before_ns``) or its size rule (``i <= upto_index``) covers
    it. ``recorded`` is False for a store opened read-only before migration 0006 (nothing to check
    against: every pruned body is accepted, as before).
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.recorded = conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = "
                                     "'retention_runs'").fetchone() is not None
        runs = conn.execute("SELECT size, before_ns, upto_index FROM retention_runs").fetchall() \
            if self.recorded else []
        self.upto = max((int(u) for _, _, u in runs if u is not None), default=-1)
        aged = sorted((int(size), int(before)) for size, before, _ in runs if before is not None)
        self._sizes = [size for size, _ in aged]
        self._best: list[int] = []  # best[j] = the largest cutoff among aged[j:]
        best = None
        for _, before in reversed(aged):
            best = before if best is None else max(best, before)
            self._best.append(best)
        self._best.reverse()

    def explains(self, index: int, time_ns: int) -> bool:
        if not self.recorded or index <= self.upto:
            return True
        j = bisect.bisect_right(self._sizes, index)  # the runs that saw this index
        return j < len(self._best) and time_ns < self._best[j]
