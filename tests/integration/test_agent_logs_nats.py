"""Container log lines through the distributed shape: cri_logs → redact → enrich(-less) → seal → WAL →
NATS JetStream → collector → store, against a real nats-server: every line once, queryable by
`kubetrail logs`, the trail verifies."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from transport_util import collector_config, names

from kubetrail.cli import cli
from kubetrail.config import parse
from kubetrail.demo.node import SimNode
from kubetrail.pipeline import run_agent, run_collector

pytestmark = pytest.mark.integration
UID = "0b4d6a3e-1111-4d7c-9a4b-000000000001"


def test_container_lines_travel_the_broker_once(tmp_path: Path, nats_server) -> None:
    """P/F-joined CRI lines, with a rotation, arrive once with their path metadata and keys."""
    stream, subject, durable = names("L")
    node = SimNode(str(tmp_path / "pods"), partial_bytes=32)
    node.start_pod("shop", "web-1", UID, ["web"])
    for i in range(50):
        node.write(UID, "web", f"line {i} " + "z" * (i * 3))
        if i == 25:
            node.rotate(UID, "web")
    agent = parse({"data_dir": str(tmp_path / "agent"), "cluster": "c1",
                   "sources": [{"type": "cri_logs", "root": str(tmp_path / "pods"), "node": "node-a", "poll_ms": 50}],
                   "buffer": {"dir": str(tmp_path / "agent" / "wal"), "max_bytes": 64 << 20},
                   "sink": {"type": "nats", "url": nats_server.url, "stream": stream, "subject": subject,
                            "publish_timeout_secs": 2}})
    col = collector_config(tmp_path, nats_server.url, stream, durable)
    stops = [threading.Event(), threading.Event()]
    logs: list[str] = []
    threads = [threading.Thread(target=fn, args=(cfg, stop, logs.append), daemon=True)
               for fn, cfg, stop in ((run_agent, agent, stops[0]), (run_collector, parse(col), stops[1]))]
    for t in threads:
        t.start()
    rows: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(rows) < 50:
            time.sleep(0.3)
            r = CliRunner().invoke(cli, ["logs", "--json", "--data", col["data_dir"]])
            rows = [orjson.loads(x) for x in r.stdout.splitlines()] if r.exit_code == 0 else []  # stdout: other threads may log
    finally:
        for s in stops:
            s.set()
        for t in threads:
            t.join(60)
    assert sorted(str(r["message"]) for r in rows) == sorted(t for (_, _, _, t) in node.written), logs
    assert {(r["namespace"], r["pod"], r["pod_uid"], r["node"]) for r in rows} == {("shop", "web-1", UID, "node-a")}
    assert CliRunner().invoke(cli, ["verify", "--data", col["data_dir"]]).exit_code == 0
