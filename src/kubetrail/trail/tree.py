"""The Merkle tree kept beside the entries (tables of migrations/0002_trail.sql).

``sync`` runs as a store append hook, inside the transaction that inserts the entries, so the tree
and the entries can never disagree after a crash. It appends the new leaf hashes to
``trail_leaves`` and every newly completed subtree to ``trail_nodes``; the compact range needed to
continue is re-read from those tables (at most 64 lookups), so nothing in memory has to survive a
rolled-back transaction. Proofs and roots at any size then cost O(log n) lookups.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from kubetrail.errors import TrailError
from kubetrail.trail import merkle
from kubetrail.trail.merkle import CompactRange


class StoredTree:
    """Read and extend the tree through a store connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def size(self) -> int:
        return int(self.conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM trail_leaves").fetchone()[0])

    def get(self, level: int, index: int) -> bytes:
        if level == 0:
            row = self.conn.execute("SELECT hash FROM trail_leaves WHERE idx = ?", (index,)).fetchone()
        else:
            row = self.conn.execute("SELECT hash FROM trail_nodes WHERE level = ? AND idx = ?",
                                    (level, index)).fetchone()
        if row is None:
            raise TrailError(f"the trail has no node at level {level}, index {index} (store damaged?)")
        return bytes(row[0])

    def leaf(self, index: int) -> bytes | None:
        row = self.conn.execute("SELECT hash FROM trail_leaves WHERE idx = ?", (index,)).fetchone()
        return bytes(row[0]) if row else None

    def find_leaf(self, leaf: bytes) -> int | None:
        """Where a leaf hash sits in the tree (a full scan: only used to explain a failure)."""
        row = self.conn.execute("SELECT idx FROM trail_leaves WHERE hash = ? ORDER BY idx LIMIT 1",
                                (leaf,)).fetchone()
        return int(row[0]) if row else None

    def compact_range(self, size: int | None = None) -> CompactRange:
        return CompactRange.load(self.size() if size is None else size, self.get)

    def _check_size(self, size: int, what: str) -> int:
        have = self.size()
        if size > have:
            raise TrailError(f"{what} {size} is beyond the trail (size {have})")
        return size

    def root(self, size: int | None = None) -> bytes:
        size = self.size() if size is None else self._check_size(size, "size")
        return merkle.root_at(size, self.get)

    def inclusion(self, index: int, size: int) -> list[bytes]:
        self._check_size(size, "size")
        if not 0 <= index < size:
            raise TrailError(f"leaf index {index} is not in a tree of size {size}")
        return merkle.inclusion_path(index, size, self.get)

    def consistency(self, old: int, new: int) -> list[bytes]:
        self._check_size(new, "size")
        if not 0 <= old <= new:
            raise TrailError(f"no consistency proof from size {old} to the smaller size {new}")
        return merkle.consistency_proof(old, new, self.get)

    def append(self, start: int, leaves: Sequence[bytes]) -> None:
        """Add leaves ``start…``; the caller holds the write transaction."""
        if not leaves:
            return
        cr = self.compact_range(start)
        nodes: list[tuple[int, int, bytes]] = []
        cr.extend(leaves, nodes)
        self.conn.executemany("INSERT INTO trail_leaves (idx, hash) VALUES (?, ?)",
                              [(start + i, h) for i, h in enumerate(leaves)])
        self.conn.executemany("INSERT INTO trail_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)

    def sync(self, chunk: int = 65536) -> int:
        """Append every stored entry the tree does not hold yet (caller holds the transaction)."""
        start = self.size()
        while True:
            rows = self.conn.execute("SELECT leaf_index, leaf_hash FROM entries WHERE leaf_index >= ? "
                                     "ORDER BY leaf_index LIMIT ?", (start, chunk)).fetchall()
            leaves = []
            for expect, (idx, h) in enumerate(rows, start):
                if idx != expect:
                    raise TrailError(f"entries are not contiguous: leaf index {idx} where {expect} was expected")
                leaves.append(bytes(h))
            self.append(start, leaves)
            start += len(leaves)
            if len(rows) < chunk:
                return start


def sync_hook(conn: sqlite3.Connection, _records: Any) -> None:
    """``Store.append_hooks`` entry: extend the tree in the append's own transaction."""
    StoredTree(conn).sync()


def sync_now(conn: sqlite3.Connection) -> int:
    """Bring the tree up to date in a transaction of its own (stores written before the trail)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        size = StoredTree(conn).sync()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return size
