"""Scaling out on PostgreSQL (issue 13's claim, issue 11's store): one JetStream stream, three
`kubetrail collector` processes on the same durable consumer, one PostgreSQL store. The collectors
share the work; every record is stored once, the leaf indexes are contiguous and `verify` is green."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from transport_util import InProc, Load, agent_config, collector_config, names, wait_for, write_config

from kubetrail.config import parse
from kubetrail.pipeline import run_agent
from kubetrail.store import open_store
from kubetrail.store.testing import execute as sql

pytestmark = pytest.mark.integration  # ~13 s here

N = 3000
COLLECTORS = 3
SUMMARY = re.compile(rb"read (\d+), stored (\d+), duplicates (\d+)")


def stored_ids(url: str, data: Path) -> list[str]:
    store = open_store(url, readonly=True, data_dir=str(data))
    try:
        return [r[0] for r in sql(store, "SELECT audit_id FROM entries WHERE kind = 'audit'").fetchall()]
    finally:
        store.close()


def test_three_collectors_one_durable_one_postgres_store(tmp_path: Path, nats_server, pg_url: str) -> None:
    stream, subject, durable = names("PG")
    data = tmp_path / "store"
    col = {**collector_config(tmp_path, nats_server.url, stream, durable), "store": pg_url}
    cfg = write_config(tmp_path / "collector.yaml", col)
    logs = [tmp_path / f"collector-{k}.log" for k in range(COLLECTORS)]
    procs = []
    agent = InProc()
    try:
        for log in logs:
            with open(log, "wb") as fh:
                procs.append(subprocess.Popen([sys.executable, "-m", "kubetrail", "collector", "--config", cfg],
                                              stdout=fh, stderr=fh))
        # every collector has its pull subscription before the records flow, so the stream's
        # messages are handed out among them rather than to whichever came first
        assert wait_for(lambda: all(b"reading" in log.read_bytes() for log in logs), 60)
        audit = tmp_path / "audit.log"
        audit.touch()
        agent.start(run_agent, parse(agent_config(tmp_path, nats_server.url, stream, subject, audit)))
        load = Load(audit, N, rate=600).start()
        assert load.done.wait(60)
        assert wait_for(lambda: len(stored_ids(pg_url, data)) >= N, 120), [log.read_text()[-2000:] for log in logs]
    finally:
        agent.close()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
    outputs = [log.read_bytes() for log in logs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0 and b"Traceback" not in out, out.decode()[-2000:]

    ids = stored_ids(pg_url, data)
    assert len(ids) == N and set(ids) == load.written  # each record once, none invented
    store = open_store(pg_url, readonly=True, data_dir=str(data))
    try:
        assert sql(store, "SELECT COUNT(*), COUNT(DISTINCT key), MIN(leaf_index), MAX(leaf_index) FROM entries"
                   ).fetchone() == (N, N, 0, N - 1)
    finally:
        store.close()
    stored = [int(SUMMARY.search(out).group(2)) for out in outputs]  # type: ignore[union-attr]
    print(f"stored per collector: {stored}")
    assert sum(stored) == N, stored  # the collectors' own counts add up: nobody stored a record twice
    assert sum(1 for s in stored if s > 0) >= 2, stored  # the durable shared the work

    r = subprocess.run([sys.executable, "-m", "kubetrail", "verify", "--json", "--data", str(data), "--store", pg_url],
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    doc = orjson.loads(r.stdout)
    assert doc["ok"] is True and doc["size"] == N
