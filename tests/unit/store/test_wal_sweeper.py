"""``Store.sweep_wal``: after each deferred commit the WAL is copied into the database on a thread and
connection of its own (``sqlite._WalSweeper``), not inside the COMMIT the pipeline waits for (issue 18).
What must hold: the copy happens (the database file fills while the commits' own checkpoints are off),
nothing is lost, the thread starts only at the first deferred commit (workers are forked from a writer
without threads) and is gone after close, the WAL stays bounded with the commits' checkpoints on, and
one process on 2+ CPUs turns it on (a writer with preparation workers leaves it off: its cores are busy)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from kubetrail.pipeline import Options, open_pipeline
from kubetrail.store import sqlite_schema
from kubetrail.store.sqlite import SqliteStore
from kubetrail.testing import make_records


def _sweepers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "kubetrail-checkpoint"]


def _settled(store: SqliteStore) -> None:
    """Wait until the sweeper has nothing left to do (its event clear and a checkpoint finished)."""
    sweeper = store._sweeper
    assert sweeper is not None
    for _ in range(500):
        if not sweeper._due.is_set():
            break
        threading.Event().wait(0.01)
    # one more checkpoint from here runs after the sweeper's, so it waits for nothing of it
    threading.Event().wait(0.05)


def test_the_sweeper_copies_the_wal_into_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_schema, "WAL_AUTOCHECKPOINT_PAGES", 0)  # the commits copy nothing themselves
    sizes, final = {}, {}
    for sweep in (False, True):
        store = SqliteStore.open(str(tmp_path / str(sweep)))
        db = os.path.join(store.data_dir, "kubetrail.db")
        try:
            store.sweep_wal = sweep
            before = os.path.getsize(db)
            assert not _sweepers()  # nothing before the first deferred commit
            for i in range(6):
                store.append_deferred(make_records(200, start=200 * i, body_bytes=2000)).result()
            if sweep:
                _settled(store)
                assert len(_sweepers()) == 1
            sizes[sweep] = os.path.getsize(db) - before
        finally:
            store.close()
        assert not _sweepers()  # joined at close
        final[sweep] = os.path.getsize(db) - before  # everything copied by the close
        again = SqliteStore.open(str(tmp_path / str(sweep)), readonly=True)
        try:
            assert again.size() == 1200
            assert [r.key for r in again.records_by_index(0, 1200)] == [r.key for r in make_records(1200)]
        finally:
            again.close()
    assert sizes[False] == 0 < final[False]  # the WAL held everything until close
    assert sizes[True] >= final[True] // 2  # copied meanwhile, by the sweeper alone


def test_the_wal_stays_bounded_with_the_sweeper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep copies what was committed when it began; the commits' own checkpoint still lets the
    WAL restart, so it does not grow with what is written."""
    monkeypatch.setattr(sqlite_schema, "WAL_AUTOCHECKPOINT_PAGES", 100)
    store = SqliteStore.open(str(tmp_path / "d"))
    wal = os.path.join(store.data_dir, "kubetrail.db-wal")
    largest = 0
    try:
        store.sweep_wal = True
        for i in range(40):
            store.append_deferred(make_records(100, start=100 * i, body_bytes=3000)).result()
            store.count("rejected", 1)  # a write between the commits, as the consumers make
            largest = max(largest, os.path.getsize(wal))
    finally:
        store.close()
    written = 4000 * 3000
    assert largest < written / 4, (largest, written)


@pytest.mark.parametrize(("cpus", "workers", "sweeps"), [(2, 0, True), (1, 0, False), (2, 1, False)])
def test_one_process_on_two_cpus_sweeps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpus: int, workers: int,
                                        sweeps: bool) -> None:
    from kubetrail import pipeline

    monkeypatch.setattr(pipeline, "cpus", lambda: cpus)
    pipe = open_pipeline(Options(data_dir=str(tmp_path / "d"), detect=False, workers=workers))
    try:
        assert pipe.store.sweep_wal is sweeps
    finally:
        pipe.close()
        pipe.store.close()
