"""The store under stress: a rolled-back dictionary, processes opening a fresh directory at once, a
read-only open, damaged files and out-of-range lookups."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.errors import StoreError, StoreVersionError
from kubetrail.record import Decoded, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.store import codec
from kubetrail.store.sqlite import DB_NAME, Store
from kubetrail.store.testing import execute as sql
from kubetrail.testing import make_event


def recs(start: int, n: int) -> list:
    return [to_record(Decoded(make_event(f"id-{i}", name=f"obj-{i}", user=f"user-{i % 13}",
                                         namespace=f"ns-{i % 7}"), "event", f"t:{i}"), SourceRef(stream="t"))
            for i in range(start, start + n)]


def test_dictionary_trained_in_a_rolled_back_append_is_forgotten(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The append that trains the dictionary fails: the row is rolled back, so is the codec."""
    monkeypatch.setattr(codec, "TRAIN_AFTER", 200)
    s = Store.open(str(tmp_path))
    s.append(recs(0, 150))

    def boom(conn: sqlite3.Connection, records: list) -> None:
        raise RuntimeError("hook failed")

    s.append_hooks.append(boom)
    with pytest.raises(RuntimeError):
        s.append(recs(150, 150))  # crosses 200 bodies: trains inside the transaction
    assert sql(s, "SELECT COUNT(*) FROM zstd_dictionaries").fetchone()[0] == 0
    s.append_hooks.clear()
    s.append(recs(150, 150))
    s.append(recs(300, 50))
    assert sql(s, "SELECT COUNT(*) FROM zstd_dictionaries").fetchone()[0] == 1
    s.close()
    other = Store.open(str(tmp_path))  # what another process sees
    bodies = [r.body for r in other.records_by_index(0, 350)]
    assert len(bodies) == 350 and all(orjson.loads(b)["kind"] == "Event" for b in bodies)
    other.close()


def test_processes_opening_a_fresh_directory_at_once(tmp_path: Path) -> None:
    """Several `kubetrail ingest` started together on a new data dir: all succeed, one key, one trail."""
    data = str(tmp_path / "d")
    start = time.time() + 1.5
    procs = []
    for p in range(4):
        log = tmp_path / f"{p}.log"
        log.write_bytes(b"".join(orjson.dumps(make_event(f"p{p}-{i}")) + b"\n" for i in range(20)))
        code = ("import sys, time; from kubetrail.cli import main; "
                f"time.sleep(max(0, {start} - time.time())); "
                f"sys.argv = ['kubetrail', 'ingest', {str(log)!r}, '--no-detect', '--data', {data!r}]; main()")
        procs.append(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = []
    for p in procs:
        _, err = p.communicate(timeout=60)
        results.append((p.returncode, err.decode()))
    assert [code for code, _ in results] == [0] * 4, results
    r = CliRunner().invoke(cli, ["verify", "--json", "--data", data])
    assert r.exit_code == 0 and orjson.loads(r.stdout)["size"] == 80, r.output


def test_readonly_open_runs_no_migration_and_refuses_newer_stores(tmp_path: Path) -> None:
    s = Store.open(str(tmp_path))
    s.append(recs(0, 3))
    sql(s, "DELETE FROM schema_migrations WHERE version = 6")  # as if written before 0006
    sql(s, "DROP TABLE retention_runs")
    sql(s, "DROP TABLE trail_state")
    s.close()
    ro = Store.open(str(tmp_path), readonly=True)
    assert [r.leaf_index for r in ro.records_by_index(0, 9)] == [0, 1, 2] and not ro.has_table("retention_runs")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        sql(ro, "DELETE FROM entries")
    ro.close()
    s = Store.open(str(tmp_path))
    assert s.has_table("retention_runs")  # a writing open migrates
    sql(s, "INSERT INTO schema_migrations VALUES (9999, 'future.sql')")
    s.close()
    with pytest.raises(StoreVersionError):
        Store.open(str(tmp_path), readonly=True)
    with pytest.raises(StoreError, match="no kubetrail store"):
        Store.open(str(tmp_path / "none"), readonly=True)
    assert not os.path.exists(tmp_path / "none")


def test_out_of_range_lookups_are_clear_errors(tmp_path: Path) -> None:
    s = Store.open(str(tmp_path / "d"))
    s.append(recs(0, 2))
    s.close()
    for args in (["show", "99999999999999999999999"], ["query", "--since", "99999999999d"],
                 ["query", "--until", "9999999999999999w"]):
        r = CliRunner().invoke(cli, [*args, "--data", str(tmp_path / "d")])
        assert r.exit_code == 2 and "out of range" in r.stderr and "Traceback" not in r.output, r.output


def test_damaged_dictionary_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A truncated dictionary: the store opens, bodies that need it are named, the rest is readable."""
    monkeypatch.setattr(codec, "TRAIN_AFTER", 100)
    data = str(tmp_path / "d")
    CliRunner().invoke(cli, ["keys", "generate", "--origin", "t.example/log", "--data", data])
    s = Store.open(data)
    s.append(recs(0, 60))
    s.append(recs(60, 100))  # trains; leaves 60… use the dictionary
    s.close()
    conn = sqlite3.connect(os.path.join(data, DB_NAME), isolation_level=None)
    conn.execute("UPDATE zstd_dictionaries SET data = substr(data, 1, 100)")
    conn.close()
    r = CliRunner().invoke(cli, ["stats", "--json", "--data", data])
    assert r.exit_code == 0 and orjson.loads(r.stdout)["entries"] == 160
    r = CliRunner().invoke(cli, ["query", "--data", data])
    assert r.exit_code == 3 and "cannot be read" in r.stderr and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["verify", "--json", "--data", data])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert orjson.loads(r.stdout)["reason"] == "modified" and orjson.loads(r.stdout)["first_bad_index"] >= 60


@pytest.mark.parametrize("where", ["header", "middle"])
def test_damaged_database_file(tmp_path: Path, where: str) -> None:
    data = tmp_path / "d"
    s = Store.open(str(data))
    s.append(recs(0, 400))
    s.close()
    path = data / DB_NAME
    raw = bytearray(path.read_bytes())
    at = 0 if where == "header" else len(raw) // 2
    raw[at:at + 4096] = os.urandom(4096)
    path.write_bytes(bytes(raw))
    for args in (["verify", "--json"], ["verify", "--deep", "--json"], ["query"], ["stats"], ["show", "5"]):
        r = CliRunner().invoke(cli, [*args, "--data", str(data)])
        assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit), r.output
        assert r.exit_code in (0, 1, 2, 3), (args, r.output)  # 3: FAILED (damaged store)
        if args[0] == "verify" and r.exit_code == 1:
            assert orjson.loads(r.stdout)["ok"] is False
        if r.exit_code in (2, 3):
            assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ")
