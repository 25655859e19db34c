"""The trail's seams to the store: the Protocols the store's trail repository implements and the
verify ``Problem`` row, in a module that imports nothing heavy.

Why a module of their own: ``kubetrail.store.api`` names these as bases of its repositories, and
every CLI command imports the store; importing them from ``tree``/``verify``/``checkpointer`` loaded
most of ``trail/`` (notes, witness, cryptography helpers) into commands that never touch the trail
(tens of milliseconds of every ``kubetrail query``). The defining modules re-export them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol


class TreeNodes(Protocol):
    """Where the tree lives (the store's trail tables)."""

    def tree_size(self) -> int: ...

    def node(self, level: int, index: int) -> bytes | None: ...

    def find_leaf(self, leaf: bytes) -> int | None:
        """The first index holding this leaf hash (a full scan: only used to explain a failure)."""
        ...

    def add_nodes(
        self, start: int, leaves: Sequence[bytes], nodes: Sequence[tuple[int, int, bytes]]
    ) -> None: ...

    def entry_leaves(self, start: int, limit: int) -> list[tuple[int, bytes]]:
        """(leaf index, stored leaf hash) of the entries from ``start``, in order, at most ``limit``."""
        ...


class ProofSource(TreeNodes, Protocol):
    """The store's trail repository, as proofs read it."""

    def latest_checkpoint(self) -> tuple[int, bytes, str] | None: ...

    def checkpoint_at(self, size: int) -> str | None: ...


class CheckpointLog(ProofSource, Protocol):
    """The store's trail repository, as the checkpointer writes it."""

    def signed_size(self) -> int | None: ...

    def entries_size(self) -> int: ...

    def lock(self) -> None:
        """Hold the trail (no append, no other signer) until the current transaction ends."""
        ...

    def add_checkpoint(self, size: int, root: bytes, note: str, signed_ns: int) -> None:
        """Store the note and raise ``trail_state.signed_size`` to ``size`` if it is larger."""
        ...


# One stored entry as verify reads it: (leaf index, entry bytes or None when the row cannot be rebuilt,
# why not, the stored leaf hash, the compressed body or None, the row's body SHA-256 (v2; None for a
# v1 row, whose header holds it), the row's time column (v2; None for v1)).
EntryRow = tuple[int, "bytes | None", str, bytes, "bytes | None", "bytes | None", "int | None"]


class VerifySource(TreeNodes, Protocol):
    """What verify reads from a store, all inside one snapshot (the store's trail repository).

    A store that cannot read its own file raises ``StoreDamagedError`` from these, never an
    engine exception."""

    def checkpoint_notes(self) -> list[tuple[int, str]]: ...

    def checkpoint_columns(self) -> list[tuple[int, int, bytes]]:
        """(id, size, root) as the checkpoint rows' own columns hold them (what the signer reads)."""
        ...

    def interior_nodes(self, level: int) -> Iterator[tuple[int, bytes]]:
        """(index, hash) of the stored complete subtrees at ``level`` (>= 1), in index order: the
        nodes proofs are served from."""
        ...

    def entries_size(self) -> int: ...

    def signed_size(self) -> int | None:
        """The largest tree size this store ever signed (``trail_state``), None if it never signed one."""
        ...

    def retention_runs(self) -> list[tuple[int, int | None, int | None]] | None:
        """(size, before_ns, upto_index) of each recorded run; None when runs are not recorded."""
        ...

    def entry_rows(self) -> Iterator[EntryRow]: ...

    def leaf_hashes(self) -> Iterator[bytes]:
        """The tree's own copy of the leaves, in index order."""
        ...

    def entry_leaf(self, index: int) -> bytes | None:
        """The leaf recomputed from the entry at ``index`` (None: no such entry, or it cannot be rebuilt)."""
        ...


@dataclass
class Problem:
    index: int
    reason: str
    detail: str
