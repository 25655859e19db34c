"""The trail's tables (migrations 0002 and 0006): tree nodes, signed checkpoints, ``trail_state``,
and the rows ``kubetrail verify`` reads.

Implements the Protocols of the pure ``kubetrail.trail`` package (``TreeNodes``, ``VerifySource``,
``CheckpointLog``). Level 0 of the tree is ``trail_leaves`` (the tree's own copy of the leaf hashes:
verify compares it with the entries to name the first removed, inserted, reordered or modified
index); levels >= 1 are ``trail_nodes``, complete subtrees only, so rows never change.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from kubetrail.store.db import Engine, damaged, damaged_errors
from kubetrail.store.rows import ENTRY_SELECT, row_entry, verify_row
from kubetrail.trail.entry import leaf_hash
from kubetrail.trail.protocols import EntryRow


class TrailTables:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.db = engine.db
        # Set only inside ``staging`` (an append's hooks): the leaf hashes of the rows the append is
        # inserting, and where the tree's new rows wait when the entries go in later.
        self.staged: tuple[int, Sequence[bytes]] | None = None
        self.later: list[tuple[str, list[tuple[Any, ...]]]] | None = None

    @contextmanager
    def staging(self, start: int, leaves: Sequence[bytes],
                later: list[tuple[str, list[tuple[Any, ...]]]] | None) -> Iterator[None]:
        """While an append's hooks run: ``entry_leaves`` answers for the rows it is inserting from
        ``leaves`` (first leaf index ``start``; reading them back cost the writer ~1 µs per event, issue
        18), and with ``later`` (the SQLite store, whose commit thread inserts the entries) ``add_nodes``
        collects the tree's new rows there, as (table, rows), instead of inserting them before the
        entries. Both are cleared on the way out, whatever the hooks did."""
        self.staged, self.later = (start, leaves), later
        try:
            yield
        finally:
            self.staged = self.later = None

    def lock(self) -> None:
        """Hold the trail (appends, signing) until the current transaction ends."""
        self.engine.lock("trail")

    # -- the tree (kubetrail.trail.tree.TreeNodes) ----------------------------------------------
    def tree_size(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM trail_leaves").fetchone()[0])

    def node(self, level: int, index: int) -> bytes | None:
        if level == 0:
            row = self.db.execute("SELECT hash FROM trail_leaves WHERE idx = ?", (index,)).fetchone()
        else:
            row = self.db.execute("SELECT hash FROM trail_nodes WHERE level = ? AND idx = ?",
                                  (level, index)).fetchone()
        return bytes(row[0]) if row else None

    def find_leaf(self, leaf: bytes) -> int | None:
        row = self.db.execute("SELECT idx FROM trail_leaves WHERE hash = ? ORDER BY idx LIMIT 1", (leaf,)).fetchone()
        return int(row[0]) if row else None

    def add_nodes(self, start: int, leaves: Sequence[bytes], nodes: Sequence[tuple[int, int, bytes]]) -> None:
        leaf_rows = list(enumerate(leaves, start))
        if self.later is not None:
            self.later += [("trail_leaves", leaf_rows), ("trail_nodes", list(nodes))]
            return
        self.engine.insert_rows("trail_leaves", ("idx", "hash"), leaf_rows)
        self.engine.insert_rows("trail_nodes", ("level", "idx", "hash"), nodes)

    def entry_leaves(self, start: int, limit: int) -> list[tuple[int, bytes]]:
        """The leaf hashes of entries ``start…`` (at most ``limit``): those of the rows an append is
        inserting from ``staged`` (the SQLite store inserts them after the tree's hook has run), those
        before from the table."""
        staged = self.staged
        first = staged[0] if staged is not None else None
        if first is None or start < first:
            sql = "SELECT leaf_index, leaf_hash FROM entries WHERE leaf_index >= ?"
            bound: tuple[int, ...] = (start, limit)
            if first is not None:
                sql += " AND leaf_index < ?"
                bound = (start, first, limit)
            rows = self.db.execute(sql + " ORDER BY leaf_index LIMIT ?", bound).fetchall()
            out = [(int(i), bytes(h)) for i, h in rows]
            if first is None or len(out) < min(limit, first - start):
                return out  # all there is (or a gap, which the tree reports)
            start = first
        else:
            out = []
        assert staged is not None
        return out + list(enumerate(staged[1][start - staged[0]:start - staged[0] + limit - len(out)], start))

    # -- checkpoints and trail_state ------------------------------------------------------------
    def latest_checkpoint(self) -> tuple[int, bytes, str] | None:
        """(size, root, note) of the most recently signed checkpoint."""
        row = self.db.execute("SELECT size, root, note FROM trail_checkpoints ORDER BY id DESC LIMIT 1").fetchone()
        return (int(row[0]), bytes(row[1]), str(row[2])) if row else None

    def latest_signed_ns(self) -> int | None:
        row = self.db.execute("SELECT signed_ns FROM trail_checkpoints ORDER BY id DESC LIMIT 1").fetchone()
        return int(row[0]) if row else None

    def checkpoint_at(self, size: int) -> str | None:
        row = self.db.execute("SELECT note FROM trail_checkpoints WHERE size = ? ORDER BY id DESC LIMIT 1",
                              (size,)).fetchone()
        return str(row[0]) if row else None

    def checkpoint_notes(self) -> list[tuple[int, str]]:
        return [(int(i), str(n)) for i, n in self.db.execute("SELECT id, note FROM trail_checkpoints ORDER BY id")]

    def checkpoint_columns(self) -> list[tuple[int, int, bytes]]:
        out = []
        for i, size, root in self.db.execute("SELECT id, size, root FROM trail_checkpoints ORDER BY id"):
            ok = isinstance(size, int) and isinstance(root, bytes | memoryview)
            out.append((int(i), size if ok else -1, bytes(root) if ok else b""))
        return out

    def checkpoint_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM trail_checkpoints").fetchone()[0])

    def add_checkpoint(self, size: int, root: bytes, note: str, signed_ns: int) -> None:
        self.db.execute("INSERT INTO trail_checkpoints (id, size, root, note, signed_ns) "
                        "VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM trail_checkpoints), ?, ?, ?, ?)",
                        (size, root, note, signed_ns))
        self.db.execute("INSERT INTO trail_state (name, value) VALUES ('signed_size', ?) ON CONFLICT (name) DO UPDATE "
                        "SET value = CASE WHEN excluded.value > trail_state.value THEN excluded.value "
                        "ELSE trail_state.value END", (size,))

    def signed_size(self) -> int | None:
        if not self.engine.has_table("trail_state"):
            return None
        row = self.db.execute("SELECT value FROM trail_state WHERE name = 'signed_size'").fetchone()
        return int(row[0]) if row else None

    # -- what verify reads (kubetrail.trail.verify.VerifySource) --------------------------------
    def entries_size(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM entries").fetchone()[0])

    def retention_runs(self) -> list[tuple[int, int | None, int | None]] | None:
        if not self.engine.has_table("retention_runs"):
            return None
        return [(int(s), b, u) for s, b, u in
                self.db.execute("SELECT size, before_ns, upto_index FROM retention_runs")]

    def entry_rows(self) -> Iterator[EntryRow]:
        try:
            for r in self.db.execute(f"SELECT {ENTRY_SELECT} FROM entries ORDER BY leaf_index"):
                yield verify_row(r)
        except damaged_errors() as exc:
            raise damaged(exc, "the entries") from exc

    def leaf_hashes(self) -> Iterator[bytes]:
        try:
            for (h,) in self.db.execute("SELECT hash FROM trail_leaves ORDER BY idx"):
                yield bytes(h)
        except damaged_errors() as exc:
            raise damaged(exc, "the tree") from exc

    def interior_nodes(self, level: int) -> Iterator[tuple[int, bytes]]:
        try:
            for i, h in self.db.execute("SELECT idx, hash FROM trail_nodes WHERE level = ? ORDER BY idx", (level,)):
                yield int(i), bytes(h) if isinstance(h, bytes | memoryview) else b""
        except damaged_errors() as exc:
            raise damaged(exc, "the tree") from exc

    def entry_leaf(self, index: int) -> bytes | None:
        row = self.db.execute(f"SELECT {ENTRY_SELECT} FROM entries WHERE leaf_index = ?", (index,)).fetchone()
        if row is None:
            return None
        try:
            return leaf_hash(row_entry(row))
        except ValueError:
            return None
