"""``SqliteStore.append_deferred``: the optimistic insert of the rows and the COMMIT run on a thread while
the pipeline prepares the next batch (issue 18). What must hold: the records are durable when
``result()`` returns, a commit that fails leaves nothing of its batch behind (rows, tree, leaf
indexes, a dictionary trained in it), the store refuses to interleave another statement with a
running commit, and ``ingest`` stores the same records with or without deferral."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import Decoded, Record, SourceRef
from kubetrail.store.sqlite import SqliteStore
from kubetrail.testing import make_event, make_records


def _doomed(store: SqliteStore) -> list[bool]:
    """A deferred foreign key makes the next COMMIT fail while ``armed[0]`` (SQLite checks deferred
    constraints at COMMIT: the one failure an append's statements cannot see coming)."""
    store._conn.executescript(
        "CREATE TABLE t_parent (id INTEGER PRIMARY KEY);"
        "CREATE TABLE t_child (p INTEGER REFERENCES t_parent (id) DEFERRABLE INITIALLY DEFERRED);")
    armed = [False]

    def hook(repos: Any, fresh: list[Record]) -> None:
        if armed[0]:
            store._conn.execute("INSERT INTO t_child (p) VALUES (999)")

    store.append_hooks.append(hook)
    return armed


def test_records_are_durable_when_result_returns(tmp_path: Path) -> None:
    store = SqliteStore.open(str(tmp_path / "d"))
    try:
        first, second = make_records(3), make_records(2, start=3)
        pending = store.append_deferred(first, {"src": "3"})
        assert pending.result().stored == first
        assert [r.leaf_index for r in first] == [0, 1, 2] and store.size() == 3
        # the next append settles nothing twice and continues the leaf indexes
        assert store.append_deferred(second, {"src": "5"}).result().duplicates == 0
        assert [r.leaf_index for r in second] == [3, 4]
    finally:
        store.close()
    other = SqliteStore.open(str(tmp_path / "d"), readonly=True)
    try:
        assert [r.key for r in other.records_by_index(0, 5)] == [r.key for r in first + second]
        assert other.position("src") == "5"
    finally:
        other.close()


def test_the_insert_runs_on_the_commit_thread_and_a_stored_key_is_appended_again(tmp_path: Path) -> None:
    """Why the thread exists: SQLite inserts the rows there, without the GIL (one statement per batch,
    ``rows.InsertStatement``). A stored key met there ends the transaction; ``result()`` appends the batch
    again in the caller's thread, looking its keys up, and the new records alone are stored."""
    import threading

    from kubetrail.trail.tree import Tree, sync_hook, sync_now

    store = SqliteStore.open(str(tmp_path / "d"))
    store.append_hooks.append(sync_hook)
    where: list[tuple[str, str]] = []
    try:
        store._conn.set_trace_callback(lambda sql: where.append((threading.current_thread().name, sql[:40])))
        store.append_deferred(make_records(3), {"src": "3"}).result()
        assert ("kubetrail-commit", "INSERT OR ROLLBACK INTO entries (key, ti") in where
        assert ("kubetrail-commit", "INSERT INTO trail_leaves (idx, hash) SEL") in where  # the tree's rows too
        assert not [w for w in where if w[0] != "kubetrail-commit" and ("INTO entries" in w[1] or "INTO trail_" in w[1])]
        where.clear()
        again = [*make_records(2, start=2), *make_records(2, start=5)]  # leaf 2 is stored; 4 is skipped
        result = store.append_deferred(again, {"src": "7"}).result()
        assert [r.key for r in result.stored] == [r.key for r in again[1:]] and result.duplicates == 1
        assert [r.leaf_index for r in again] == [None, 3, 4, 5]
        insert_threads = {w[0] for w in where if "INTO entries" in w[1]}
        assert insert_threads == {"kubetrail-commit", threading.current_thread().name}  # tried, then again here
        assert store.size() == 6 and store.position("src") == "7"
        root = Tree(store.trail).root()
    finally:
        store._conn.set_trace_callback(None)
        store.close()
    other = SqliteStore.open(str(tmp_path / "e"))
    try:
        other.append([*make_records(4), *make_records(2, start=5)])  # the same six records
        assert sync_now(other) == 6 and Tree(other.trail).root() == root
    finally:
        other.close()


def test_a_failed_commit_leaves_nothing_behind(tmp_path: Path) -> None:
    store = SqliteStore.open(str(tmp_path / "d"))
    try:
        store.append(make_records(2), {"src": "2"})
        armed = _doomed(store)
        armed[0] = True
        doomed = make_records(3, start=2)
        pending = store.append_deferred(doomed, {"src": "5"})
        with pytest.raises(sqlite3.IntegrityError):
            pending.result()
        assert [r.leaf_index for r in doomed] == [None, None, None]
        assert store.size() == 2 and store.position("src") == "2"
        assert store._conn.execute("SELECT count(*) FROM entries").fetchone() == (2,)
        armed[0] = False
        again = store.append_deferred(doomed, {"src": "5"}).result()
        assert [r.leaf_index for r in again.stored] == [2, 3, 4] and store.position("src") == "5"
        assert store._conn.execute("SELECT count(*) FROM entries").fetchone() == (5,)
    finally:
        store.close()


def test_nothing_interleaves_with_a_running_commit(tmp_path: Path) -> None:
    """A caller that forgets ``result()`` gets the commit finished (and its error) before its own
    statement runs, never a statement inside someone else's transaction."""
    store = SqliteStore.open(str(tmp_path / "d"))
    try:
        store.append_deferred(make_records(4), {"src": "4"})
        store.count("probe", 1)  # a transaction of its own: waits for the commit first
        assert store.counters()["probe"] == 1 and store.size() == 4
        armed = _doomed(store)
        armed[0] = True
        store.append_deferred(make_records(1, start=4))
        with pytest.raises(sqlite3.IntegrityError):
            store.count("probe", 1)
        assert store.size() == 4 and store.counters()["probe"] == 1
    finally:
        armed[0] = False
        store.close()


def _events(n: int) -> list[Decoded]:
    return [Decoded(make_event(f"{i:08d}-0000-0000-0000-000000000000", verb="create", resource="configmaps",
                               namespace="ns", name=f"cm{i}", requestObject={"i": i}), "event", f"f@{i}")
            for i in range(n)]


def _ingest(data: Path, events: list[Decoded], batch: int) -> tuple[list[tuple[int, str]], Any]:
    pipe = open_pipeline(Options(data_dir=str(data), detect=False), batch_size=batch)
    try:
        summary = pipe.ingest_items(events, SourceRef(stream="audit-file:/a.log"))
    finally:
        pipe.close()
        pipe.store.close()
    store = SqliteStore.open(str(data), readonly=True)
    try:
        rows = store._conn.execute("SELECT leaf_index, key FROM entries ORDER BY leaf_index").fetchall()
    finally:
        store.close()
    return rows, summary


def test_ingest_stores_the_same_with_deferred_commits(tmp_path: Path) -> None:
    """Batches of 7 over 40 events (five deferred commits and a last synchronous one) give the same
    entries, in the same order, as one synchronous batch."""
    deferred, summary = _ingest(tmp_path / "a", _events(40), 7)
    whole, _ = _ingest(tmp_path / "b", _events(40), 1000)
    assert deferred == whole and len(deferred) == 40
    assert (summary.read, summary.stored, summary.rejected) == (40, 40, 0)


def test_a_commit_failing_for_its_records_is_isolated_like_a_synchronous_one(tmp_path: Path) -> None:
    """A deferred commit failing for a reason that is not the machine's is redone synchronously (split
    until the failing records are alone): here the second batch's commit fails once, and every record
    is stored, in order, each handed to the consumers once."""
    pipe = open_pipeline(Options(data_dir=str(tmp_path / "d"), detect=False), batch_size=5)
    notified: list[int | None] = []
    commits: list[bool] = []
    try:
        store = pipe.store
        assert isinstance(store, SqliteStore)
        store._conn.executescript(
            "CREATE TABLE t_parent (id INTEGER PRIMARY KEY);"
            "CREATE TABLE t_child (p INTEGER REFERENCES t_parent (id) DEFERRABLE INITIALLY DEFERRED);")

        def hook(repos: Any, fresh: list[Record]) -> None:
            commits.append(True)
            if len(commits) == 2:  # the second batch, the first time only
                store._conn.execute("INSERT INTO t_child (p) VALUES (999)")

        store.append_hooks.append(hook)
        pipe.consumers.append(_Spy(notified))
        summary = pipe.ingest_items(_events(17), SourceRef(stream="audit-file:/a.log"))
    finally:
        pipe.close()
        pipe.store.close()
    assert (summary.stored, summary.rejected) == (17, 0)
    assert notified == list(range(17))
    assert len(commits) == 5  # batches 1, 2 (failed), 2 again, 3, and the last 2 records
    from click.testing import CliRunner

    from kubetrail.cli import cli

    v = CliRunner().invoke(cli, ["verify", "--data", str(tmp_path / "d")])  # the tree rolled back with the batch
    assert v.exit_code == 0, v.output


class _Spy:
    def __init__(self, seen: list[int | None]) -> None:
        self.seen = seen

    def consume(self, records: list[Record], store: Any) -> None:
        self.seen.extend(r.leaf_index for r in records)

    def close(self) -> None:
        pass


def test_ingest_cli_on_a_file_of_several_batches(tmp_path: Path) -> None:
    """The real command over 4,500 events (two deferred commits, one synchronous), verified."""
    from click.testing import CliRunner

    from kubetrail.cli import cli

    log = tmp_path / "a.log"
    log.write_bytes(b"".join(orjson.dumps(d.event) + b"\n" for d in _events(4500)))
    runner = CliRunner()
    r = runner.invoke(cli, ["ingest", str(log), "--no-detect", "--no-progress", "--data", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    assert "stored 4500" in r.output
    r = runner.invoke(cli, ["ingest", str(log), "--no-detect", "--no-progress", "--data", str(tmp_path / "d")])
    assert r.exit_code == 0 and "stored 0, duplicates 4500" in r.output, r.output
    v = runner.invoke(cli, ["verify", "--data", str(tmp_path / "d")])
    assert v.exit_code == 0, v.output


def test_the_next_batch_is_prepared_while_the_previous_one_commits(tmp_path: Path) -> None:
    """``Store.prepare`` runs for each full batch before the pipeline waits for the previous batch's
    commit (the work overlaps the commit), leaves exactly ``rows.row_head`` on each record, and the
    stored rows are those of an ingest in one synchronous batch."""
    from kubetrail.store.rows import row_head

    pipe = open_pipeline(Options(data_dir=str(tmp_path / "a"), detect=False), batch_size=7)
    store = pipe.store
    assert isinstance(store, SqliteStore)
    calls: list[tuple[int, bool, bool]] = []
    original = store.prepare

    def spy(records: list[Record]) -> None:
        original(records)
        calls.append((len(records), store._pending is not None,
                      all(r.__dict__["_row_head"] == row_head(r) for r in records)))

    store.prepare = spy  # type: ignore[method-assign]
    try:
        pipe.ingest_items(_events(40), SourceRef(stream="audit-file:/a.log"))
        prepared = store._conn.execute("SELECT * FROM entries ORDER BY leaf_index").fetchall()
    finally:
        pipe.close()
        store.close()
    # five full batches: the first has no commit before it, each later one is prepared while one runs
    assert calls == [(7, False, True)] + [(7, True, True)] * 4
    whole = open_pipeline(Options(data_dir=str(tmp_path / "b"), detect=False), batch_size=1000)
    try:
        whole.ingest_items(_events(40), SourceRef(stream="audit-file:/a.log"))
        assert isinstance(whole.store, SqliteStore)
        assert whole.store._conn.execute("SELECT * FROM entries ORDER BY leaf_index").fetchall() == prepared
    finally:
        whole.close()
        whole.store.close()
