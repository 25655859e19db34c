"""The Merkle tree kept beside the entries, over whatever stores its nodes (``TreeNodes``).

``sync`` runs as a store append hook, inside the transaction that inserts the entries, so the tree
and the entries can never disagree after a crash. It appends the new leaf hashes and every newly
completed subtree; the compact range needed to continue is re-read from the stored nodes (at most
64 lookups), so nothing in memory has to survive a rolled-back transaction. Proofs and roots at any
size then cost O(log n) lookups.

This module holds no SQL: the store's trail repository (``kubetrail.store``) implements
``TreeNodes``; level 0 is the tree's own copy of the leaf hashes, level >= 1 the complete subtrees.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from kubetrail.errors import TrailError
from kubetrail.trail import merkle
from kubetrail.trail.merkle import CompactRange
from kubetrail.trail.protocols import TreeNodes


class HasTree(Protocol):
    @property
    def trail(self) -> Any: ...


class TreeStore(HasTree, Protocol):
    """A store whose transactions offer the trail repository."""

    def transaction(self) -> AbstractContextManager[Any]: ...

    def size(self) -> int: ...


class Tree:
    """Read and extend the tree through its node store."""

    def __init__(self, nodes: TreeNodes) -> None:
        self.nodes = nodes

    def size(self) -> int:
        return self.nodes.tree_size()

    def get(self, level: int, index: int) -> bytes:
        h = self.nodes.node(level, index)
        if h is None:
            raise TrailError(f"the trail has no node at level {level}, index {index} (store damaged?)")
        return h

    def leaf(self, index: int) -> bytes | None:
        return self.nodes.node(0, index)

    def find_leaf(self, leaf: bytes) -> int | None:
        return self.nodes.find_leaf(leaf)

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
        self.nodes.add_nodes(start, leaves, nodes)

    def sync(self, chunk: int = 65536) -> int:
        """Append every stored entry the tree does not hold yet (caller holds the transaction)."""
        start = self.size()
        while True:
            rows = self.nodes.entry_leaves(start, chunk)
            leaves = []
            for expect, (idx, h) in enumerate(rows, start):
                if idx != expect:
                    raise TrailError(f"entries are not contiguous: leaf index {idx} where {expect} was expected")
                leaves.append(h)
            self.append(start, leaves)
            start += len(leaves)
            if len(rows) < chunk:
                return start


def sync_hook(tx: HasTree, _records: Any) -> None:
    """A store append hook: extend the tree in the append's own transaction."""
    Tree(tx.trail).sync()


def sync_now(store: TreeStore) -> int:
    """Bring the tree up to date in a transaction of its own (stores written before the trail)."""
    with store.transaction() as tx:
        return Tree(tx.trail).sync()
