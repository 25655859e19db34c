"""The tree's append hook takes the leaf hashes of the rows an append has just inserted from the store
(``TrailTables.staging``) instead of reading them back (issue 18: ~1 µs per event in the writer). What
must hold: the tree is the one the read-back builds — same leaves, nodes and root — for fresh appends,
replays that store only some records, a tree that lags its entries, and leaf hashes the rows carry
(a staged hash that differs from the row would show here); and nothing stays staged after an append."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kubetrail.record import Record
from kubetrail.store.sqlite import SqliteStore
from kubetrail.store.trail import TrailTables
from kubetrail.testing import make_records
from kubetrail.trail.tree import Tree, sync_hook, sync_now


def _tree_rows(path: Path) -> tuple[list[tuple[int, bytes]], list[tuple[int, int, bytes]]]:
    conn = sqlite3.connect(path)
    try:
        leaves = conn.execute("SELECT idx, hash FROM trail_leaves ORDER BY idx").fetchall()
        nodes = conn.execute("SELECT level, idx, hash FROM trail_nodes ORDER BY level, idx").fetchall()
        return leaves, nodes
    finally:
        conn.close()


def _build(data: Path, batches: list[list[Record]], staged: bool, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Append ``batches`` with the tree hook; ``staged=False`` makes every leaf come from the entries."""
    with monkeypatch.context() as m:
        if not staged:
            m.setattr(TrailTables, "staged", property(lambda self: None, lambda self, value: None), raising=False)
        store = SqliteStore.open(str(data))
        try:
            store.append_hooks.append(sync_hook)
            for batch in batches:
                store.append_deferred(batch).result()
            return Tree(store.trail).root()
        finally:
            store.close()


def _batches() -> list[list[Record]]:
    first = make_records(7)
    again = [*make_records(3, start=5), *make_records(9, start=8)]  # 5..7 are stored: a replay stores 8
    return [first, make_records(1, start=7), again, make_records(16, start=17)]


def test_staged_leaves_build_the_tree_the_entries_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read_back = _build(tmp_path / "a", _batches(), staged=False, monkeypatch=monkeypatch)
    staged = _build(tmp_path / "b", _batches(), staged=True, monkeypatch=monkeypatch)
    assert staged == read_back
    assert _tree_rows(tmp_path / "a" / "kubetrail.db") == _tree_rows(tmp_path / "b" / "kubetrail.db")
    leaves, _ = _tree_rows(tmp_path / "b" / "kubetrail.db")
    assert [i for i, _ in leaves] == list(range(33))


def test_the_hook_reads_no_leaf_back_and_nothing_stays_staged(tmp_path: Path) -> None:
    store = SqliteStore.open(str(tmp_path / "d"))
    seen: list[str] = []
    try:
        store.append_hooks.append(sync_hook)
        store.append_deferred(make_records(4)).result()
        store._conn.set_trace_callback(seen.append)
        store.append_deferred(make_records(5, start=4)).result()
        store._conn.set_trace_callback(None)
        assert store.trail.staged is None
        assert not [s for s in seen if "leaf_hash FROM entries" in s]
        assert store.trail.entry_leaves(4, 100) == [(4 + i, h) for i, (_, h) in enumerate(
            store._conn.execute("SELECT leaf_index, leaf_hash FROM entries WHERE leaf_index >= 4 ORDER BY 1"))]
    finally:
        store.close()


def test_a_lagging_tree_still_reads_what_it_lacks(tmp_path: Path) -> None:
    """Entries stored before the trail hook existed: the tree starts behind the staged leaves, so the
    hook reads from the entries, and the tree ends the same as one synced afterwards."""
    store = SqliteStore.open(str(tmp_path / "d"))
    try:
        store.append_deferred(make_records(6)).result()  # no hook: the tree lags
        store.append_hooks.append(sync_hook)
        store.append_deferred(make_records(4, start=6)).result()
        root = Tree(store.trail).root()
        assert Tree(store.trail).size() == 10
    finally:
        store.close()
    other = SqliteStore.open(str(tmp_path / "e"))
    try:
        other.append_deferred(make_records(10)).result()
        assert sync_now(other) == 10
        assert Tree(other.trail).root() == root
    finally:
        other.close()


def test_a_failing_hook_leaves_nothing_staged_and_the_next_append_inserts_its_tree(tmp_path: Path) -> None:
    """``TrailTables.staging`` clears the staged leaves and the deferred tree rows whatever the hooks do:
    a later append whose hook runs outside an append's staging must not read stale leaves nor leave its
    tree rows in a list nobody inserts."""
    store = SqliteStore.open(str(tmp_path / "d"))

    def failing(_store: object, _records: list[Record]) -> None:
        assert store.trail.staged is not None and store.trail.later is not None  # inside the staging
        raise RuntimeError("hook failed")

    try:
        store.append_hooks.append(failing)
        with pytest.raises(RuntimeError, match="hook failed"):
            store.append_deferred(make_records(3)).result()
        assert (store.trail.staged, store.trail.later) == (None, None)
        store.append_hooks[:] = [sync_hook]
        store.append_deferred(make_records(3)).result()
        assert Tree(store.trail).size() == 3
    finally:
        store.close()
    leaves, _ = _tree_rows(tmp_path / "d" / "kubetrail.db")
    assert [i for i, _ in leaves] == [0, 1, 2]
