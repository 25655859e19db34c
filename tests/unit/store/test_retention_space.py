"""Retention gives the space back: on SQLite `--max-bytes` caps the file's real size and an age rule
shrinks the file (VACUUM); on PostgreSQL the pruned space is vacuumed for reuse and the real size
reported. The trail verifies afterwards on both."""

from __future__ import annotations

import os
import random
from pathlib import Path

import orjson
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.store import open_store
from kubetrail.store.testing import execute as sql
from kubetrail.testing import make_event


def run(*args: str) -> dict:
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    return orjson.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip().startswith("{") else {}


def fill(tmp_path: Path, args: list[str], n: int = 3000) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"".join(orjson.dumps(make_event(
        f"ret-{i}", name=f"object-{i}", user=f"u{i % 5}", time=f"2024-05-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z",
        requestObject={"metadata": {"name": f"object-{i}"}, "data": random.Random(i).randbytes(150).hex()})) + b"\n"
        for i in range(n)))
    CliRunner().invoke(cli, ["ingest", str(log), "--no-detect", *args])


def test_max_bytes_caps_the_sqlite_file(tmp_path: Path) -> None:
    data = tmp_path / "d"
    fill(tmp_path, ["--data", str(data)])
    before = run("stats", "--json", "--data", str(data))["db_bytes"]
    bodies = run("retention", "--max-age", "2100-01-01T00:00:00Z", "--dry-run", "--json", "--data", str(data))
    cap = before - bodies["bytes_freed"] // 2  # entries, indexes and the tree stay: half the bodies must go
    res = run("retention", "--max-bytes", str(cap), "--json", "--data", str(data))
    assert res["pruned"] > 0 and res["bodies_left"] > 0 and res["db_bytes"] <= cap
    assert os.path.getsize(data / "kubetrail.db") <= cap  # the file itself, WAL folded in
    assert run("verify", "--json", "--data", str(data))["ok"] is True


def test_age_retention_shrinks_the_sqlite_file(tmp_path: Path) -> None:
    data = tmp_path / "d"
    fill(tmp_path, ["--data", str(data)], n=1500)
    before = os.path.getsize(data / "kubetrail.db")
    bodies = run("retention", "--max-age", "2000-01-01T00:00:00Z", "--json", "--dry-run", "--data", str(data))
    res = run("retention", "--max-age", "2024-05-01T10:15:00Z", "--json", "--data", str(data))
    assert res["pruned"] == 900 and bodies["bytes_left"] > 0
    assert os.path.getsize(data / "kubetrail.db") <= before - bodies["bytes_left"] * 900 // 1500 * 8 // 10
    assert run("verify", "--json", "--data", str(data))["ok"] is True


def test_postgres_prunes_vacuums_and_reports(tmp_path: Path, pg_url: str) -> None:
    args = ["--data", str(tmp_path / "d"), "--store", pg_url]
    fill(tmp_path, args, n=1500)
    before = run("stats", "--json", *args)["db_bytes"]
    bodies = run("retention", "--max-age", "2100-01-01T00:00:00Z", "--dry-run", "--json", *args)
    res = run("retention", "--max-bytes", str(before - bodies["bytes_freed"] // 2), "--json", *args)
    assert res["pruned"] > 0 and res["bodies_left"] > 0 and res["db_bytes"] > 0
    store = open_store(pg_url, readonly=True)
    try:  # retention vacuumed the pruned table, so its space is reused by later rows
        assert sql(store, "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'entries' "
                          "AND schemaname = current_schema()").fetchone()[0] is True
    finally:
        store.close()
    assert run("verify", "--json", *args)["ok"] is True
