"""bench/chunk_transfer.py, bench/index_cost.py and bench/vcpu_share.py (issue 18's figures for the workers'
transport, the indexes' cost and what the commit thread's CPU is worth) run against the code they
measure: small inputs, every line printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.testing import make_event

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="the slots are Linux's")
def test_chunk_transfer_measures_both_ways() -> None:
    out = _run(str(ROOT / "bench" / "chunk_transfer.py"), "--mb", "0.2", "--chunks", "5")
    assert "pipe " in out and "shared-memory slot" in out and out.count("per event") == 2, out


def test_index_cost_replays_a_store(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"".join(orjson.dumps(make_event(f"e-{i}", user=f"u{i % 3}")) + b"\n" for i in range(40)))
    data = tmp_path / "d"
    r = CliRunner().invoke(cli, ["ingest", str(log), "--data", str(data), "--no-detect", "--workers", "0"])
    assert r.exit_code == 0, r.output
    out = _run(str(ROOT / "bench" / "index_cost.py"), str(data), "--repeat", "1", "--batch", "10")
    assert out.startswith("40 rows of")
    for variant in ("as is (integer heads", "before 0016", "without the key head's index",
                    "without the auditID head's index", "without both", "no secondary index"):
        assert variant in out, (variant, out)
    assert out.count("KiB/row") == 6


def test_vcpu_share_times_the_loop_beside_each_hog() -> None:
    out = _run(str(ROOT / "bench" / "vcpu_share.py"), "--loops", "20000", "--repeat", "2")
    lines = out.splitlines()
    assert lines[0].startswith("python loop alone") and len(lines) == 4, out
    assert [line.split()[2] for line in lines[1:]] == ["sha256", "sqlite", "sleep"], out


@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="reads Linux's schedstat")
def test_waits_splits_the_main_threads_wall_time(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"".join(orjson.dumps(make_event(f"e-{i}", user=f"u{i % 3}")) + b"\n" for i in range(300)))
    out = _run(str(ROOT / "bench" / "waits.py"), str(log), "--repeat", "2")
    lines = out.splitlines()
    assert len(lines) == 2 and all(line.startswith("wall ") and "blocked" in line for line in lines), out
    for line in lines:
        fields = line.split()
        wall, running = float(fields[1]), float(fields[6])
        assert 0 < running <= wall, line


def test_ingest_bench_stores_each_run_in_a_fresh_postgres_schema(tmp_path: Path, postgres_server) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    out = _run(str(ROOT / "bench" / "ingest.py"), "--events", "300", "--runs", "1", "--levels", "Metadata",
               "--workers", "0", "--dir", str(tmp_path), "--store-url", postgres_server.admin_url)
    assert "store: PostgreSQL (a fresh schema per run)" in out.splitlines()[0], out
    assert "ingest, single process" in out and "parse only" in out, out
    with psycopg.connect(postgres_server.admin_url) as conn:
        left = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'kt_bench_%'").fetchall()
    assert left == []  # each run's schema is dropped after it
