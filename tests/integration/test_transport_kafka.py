"""Agent -> WAL -> Kafka -> collector -> store, over the Kafka protocol (tansu: memory-only broker).

These prove kubetrail speaks Kafka correctly (idempotent producer, key = source, a consumer group
committing offsets after the store); they say nothing about a Kafka cluster's durability.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from transport_util import Held, audit_lines

from kubetrail.cli import cli
from kubetrail.config import parse
from kubetrail.pipeline import run_agent, run_collector

pytestmark = pytest.mark.integration


def test_records_travel_through_kafka_exactly_once(tmp_path: Path, kafka_broker) -> None:
    topic, group = f"kt-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "audit.log"
    log.write_bytes(audit_lines(0, 300))
    agent = parse({"data_dir": str(tmp_path / "agent"), "cluster": "c1",
                   "sources": [{"type": "audit_file", "path": str(log), "node": "node-a", "poll_ms": 20}],
                   "sink": {"type": "kafka", "bootstrap_servers": kafka_broker.bootstrap, "topic": topic}})
    data = tmp_path / "store"
    collector = parse({"data_dir": str(data), "checkpoint_interval_secs": 0.5,
                       "source": {"type": "kafka", "bootstrap_servers": kafka_broker.bootstrap, "topic": topic,
                                  "group": group, "session_timeout_secs": 6}})
    stops, threads, logs = [], [], []
    for fn, cfg in ((run_agent, agent), (run_collector, collector)):
        stop = threading.Event()
        t = threading.Thread(target=fn, args=(cfg, stop, logs.append), daemon=True)
        t.start()
        stops.append(stop)
        threads.append(t)
    try:
        with open(log, "ab") as fh:
            fh.write(audit_lines(300, 200))
        written = {f"r-{i:08d}" for i in range(500)}
        end = time.monotonic() + 60
        while time.monotonic() < end and Held(data).report(written)["stored"] < 500:
            time.sleep(0.1)
    finally:
        for s in stops:
            s.set()
        for t in threads:
            t.join(60)
    report = Held(data).report(written)
    print("kafka:", report)
    assert report == {"written": 500, "stored": 500, "lost": 0, "duplicated": 0, "invented": 0}, logs
    assert sorted(r[2] for r in Held(data).rows) == list(range(1, 501))
    result = CliRunner().invoke(cli, ["verify", "--data", str(data)])
    assert result.exit_code == 0, result.output
