"""Retention: delete old bodies, never entries or leaf hashes, so the trail stays verifiable.

A pruned entry keeps its header (with the body's SHA-256) and its leaf; ``verify`` counts it as
pruned, not tampered. Space is returned to the file system by SQLite's own reuse of free pages (or a
``VACUUM`` the operator runs).
"""

from __future__ import annotations

import re
import sqlite3
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
        if before_ns is not None:
            conn.execute("UPDATE entries SET body = NULL WHERE body IS NOT NULL AND time < ?", (before_ns,))
        if last >= 0:
            conn.execute("UPDATE entries SET body = NULL WHERE body IS NOT NULL AND leaf_index <= ?", (last,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return res
