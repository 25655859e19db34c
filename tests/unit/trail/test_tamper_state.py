"""Tampering with the trail's own bookkeeping, on copies of the golden trail: deleting every checkpoint
(and the tree) before rewriting entries, and deleting a body the way retention does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner
from test_tamper import db, expect, store_of, verify

from kubetrail.cli import cli
from kubetrail.record import Decoded, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.testing import make_event
from kubetrail.trail.checkpointer import make_checkpointer

N = 300


def migrated(trail: Path) -> Any:
    """The golden store as any writing kubetrail leaves it (migrations applied), opened raw."""
    store_of(trail).close()
    return db(trail)


def forge(conn: Any) -> None:
    """Delete every checkpoint and the whole tree, then delete entry 100 and renumber the rest."""
    for table in ("trail_checkpoints", "trail_leaves", "trail_nodes"):
        conn.execute(f"DELETE FROM {table}")
    conn.execute("DELETE FROM entries WHERE leaf_index = 100")
    conn.execute("UPDATE entries SET leaf_index = leaf_index - 1 WHERE leaf_index > 100")


def ingest(trail: Path, tmp_path: Path, *extra: str, n: int = 3, env: dict[str, str] | None = None):
    log = tmp_path / "more.log"
    log.write_bytes(b"".join(orjson.dumps(make_event(f"more-{i}")) + b"\n" for i in range(n)))
    return CliRunner().invoke(cli, ["ingest", str(log), "--no-detect", "--data", str(trail / "data"), *extra],
                              env=env)


def checkpoints(trail: Path) -> int:
    return db(trail).execute("SELECT COUNT(*) FROM trail_checkpoints").fetchone()[0]


def test_deleted_checkpoints_and_tree_fail_verify(trail: Path) -> None:
    forge(migrated(trail))
    r = CliRunner().invoke(cli, ["verify", "--json", "--data", str(trail / "data")])
    assert r.exit_code == 1 and orjson.loads(r.stdout) == {"ok": False, "first_bad_index": 0,
                                                           "reason": "bad-signature"}
    assert "entries but no signed checkpoint" in r.stderr


def test_the_next_ingest_refuses_to_sign_the_forged_tree(trail: Path, tmp_path: Path) -> None:
    forge(migrated(trail))
    r = ingest(trail, tmp_path)
    assert r.exit_code == 2 and "refusing to sign" in r.stderr and "Traceback" not in r.output
    assert checkpoints(trail) == 0
    expect(trail, 0, "bad-signature")


def test_without_the_state_row_only_a_witness_tells(trail: Path) -> None:
    """The signing record can be deleted too (documented limit); the witness still sees the rewrite."""
    conn = migrated(trail)
    forge(conn)
    conn.execute("DELETE FROM trail_state")
    assert verify(trail)[0] == 0
    expect(trail, 64, "inconsistent-checkpoint", "--witness", str(trail / "witness"))


def test_signing_refuses_a_tree_smaller_than_the_witness(trail: Path, tmp_path: Path) -> None:
    conn = migrated(trail)
    for table in ("trail_checkpoints", "trail_leaves", "trail_nodes", "trail_state"):
        conn.execute(f"DELETE FROM {table}")
    conn.execute("DELETE FROM entries WHERE leaf_index >= 192")
    witness = str(trail / "witness")
    before = sorted(os.listdir(witness))
    r = ingest(trail, tmp_path, env={"KUBETRAIL_WITNESS_DIR": witness})
    assert r.exit_code == 2 and "refusing to sign" in r.stderr and "witness" in r.stderr
    r = CliRunner().invoke(cli, ["checkpoint", "--witness", witness, "--data", str(trail / "data")])
    assert r.exit_code == 2 and "refusing to sign" in r.stderr
    assert checkpoints(trail) == 0 and sorted(os.listdir(witness)) == before


def test_signing_refuses_a_tree_that_forks_from_the_witness(trail: Path, tmp_path: Path) -> None:
    """Rolled back to 192 and regrown past the witness's 300 with other entries: not signed either."""
    conn = migrated(trail)
    for table in ("trail_checkpoints", "trail_leaves", "trail_nodes", "trail_state"):
        conn.execute(f"DELETE FROM {table}")
    conn.execute("DELETE FROM entries WHERE leaf_index >= 192")
    r = ingest(trail, tmp_path, n=150, env={"KUBETRAIL_WITNESS_DIR": str(trail / "witness")})
    assert r.exit_code == 2 and "does not extend the witness" in r.stderr
    assert checkpoints(trail) == 0


def test_body_deleted_with_a_plain_update_is_not_retention(trail: Path) -> None:
    migrated(trail).execute("UPDATE entries SET body = NULL WHERE leaf_index = 250")
    expect(trail, 250, "modified")


def test_retention_explains_only_what_it_pruned(trail: Path) -> None:
    r = CliRunner().invoke(cli, ["retention", "--max-age", "2024-05-01T10:03:00Z", "--json",
                                 "--data", str(trail / "data")])
    assert orjson.loads(r.stdout)["pruned"] == 180
    conn = db(trail)
    (run,) = conn.execute("SELECT size, upto_index, pruned FROM retention_runs").fetchall()
    assert run == (N, None, 180)
    assert verify(trail)[0] == 0
    conn.execute("UPDATE entries SET body = NULL WHERE leaf_index = 250")  # newer than the cutoff
    expect(trail, 250, "modified")


def test_a_late_old_event_is_not_covered_by_an_earlier_run(trail: Path) -> None:
    """An event older than the cutoff that arrives after the run keeps its body; deleting it shows."""
    data = str(trail / "data")
    CliRunner().invoke(cli, ["retention", "--max-age", "2024-05-01T10:03:00Z", "--data", data])
    store = store_of(trail)
    cp = make_checkpointer(store, None)
    late = to_record(Decoded(make_event("late", time="2024-05-01T09:00:00Z"), "event", "0"), SourceRef(stream="x"))
    cp.consume(store.append([late]).stored, store)
    store.close()
    assert verify(trail)[0] == 0
    db(trail).execute("UPDATE entries SET body = NULL WHERE leaf_index = ?", (N,))
    expect(trail, N, "modified")


def test_size_retention_is_recorded_and_verifies(trail: Path) -> None:
    """--max-bytes caps the store's real size: half the bodies' bytes below it prunes some bodies, not all."""
    data = ["--data", str(trail / "data")]
    migrated(trail)  # the golden store is older: the first writing open adds tables and indexes
    size = orjson.loads(CliRunner().invoke(cli, ["stats", "--json", *data]).stdout)["db_bytes"]
    bodies = orjson.loads(CliRunner().invoke(cli, ["retention", "--max-age", "2100-01-01T00:00:00Z", "--dry-run",
                                                   "--json", *data]).stdout)["bytes_freed"]
    r = CliRunner().invoke(cli, ["retention", "--max-bytes", str(size - bodies // 2), "--json", *data])
    res = orjson.loads(r.stdout)
    pruned = res["pruned"]
    (upto,) = db(trail).execute("SELECT MAX(upto_index) FROM retention_runs").fetchone()
    assert 0 < pruned < N and upto == pruned - 1 and res["bodies_left"] == N - pruned
    assert verify(trail)[0] == 0
    db(trail).execute("UPDATE entries SET body = NULL WHERE leaf_index = ?", (upto + 1,))
    expect(trail, upto + 1, "modified")


def test_bodies_pruned_before_runs_were_recorded_stay_explained(trail: Path) -> None:
    """Migration 0006 records one run covering the bodies a store had already pruned."""
    db(trail).execute("UPDATE entries SET body = NULL WHERE leaf_index < 40")  # an older kubetrail's retention
    conn = migrated(trail)
    assert conn.execute("SELECT run_ns, upto_index, pruned FROM retention_runs").fetchall() == [(0, 39, 40)]
    assert verify(trail)[0] == 0
