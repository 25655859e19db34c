"""Agent -> WAL -> NATS JetStream -> collector -> store, in one process, against a real nats-server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from transport_util import Held, agent_config, audit_lines, collector_config, names

from kubetrail.cli import cli
from kubetrail.config import parse
from kubetrail.pipeline import run_agent, run_collector

pytestmark = pytest.mark.integration


def wait_for(cond, secs: float = 30.0) -> bool:
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


class Running:
    """run_agent / run_collector in threads, stopped and joined at the end."""

    def __init__(self) -> None:
        self.stops: list[threading.Event] = []
        self.threads: list[threading.Thread] = []
        self.logs: list[str] = []

    def start(self, fn, config) -> threading.Event:
        stop = threading.Event()
        t = threading.Thread(target=fn, args=(config, stop, self.logs.append), daemon=True)
        t.start()
        self.stops.append(stop)
        self.threads.append(t)
        return stop

    def close(self) -> None:
        for s in self.stops:
            s.set()
        for t in self.threads:
            t.join(60)


@pytest.fixture
def running():
    r = Running()
    yield r
    r.close()


def test_records_travel_exactly_once_and_verify(tmp_path: Path, nats_server, running) -> None:
    stream, subject, durable = names()
    log = tmp_path / "audit.log"
    log.write_bytes(audit_lines(0, 300))
    running.start(run_agent, parse(agent_config(tmp_path, nats_server.url, stream, subject, log)))
    col = collector_config(tmp_path, nats_server.url, stream, durable)
    running.start(run_collector, parse(col))
    with open(log, "ab") as fh:
        fh.write(audit_lines(300, 200))
    written = {f"r-{i:08d}" for i in range(500)}
    assert wait_for(lambda: Held(col["data_dir"]).report(written)["stored"] == 500), running.logs
    running.close()
    held = Held(col["data_dir"])
    assert held.report(written) == {"written": 500, "stored": 500, "lost": 0, "duplicated": 0, "invented": 0}
    seqs = sorted(r[2] for r in held.rows)
    assert seqs == list(range(1, 501))  # sealed at the agent, contiguous, stored with the record
    result = CliRunner().invoke(cli, ["verify", "--data", col["data_dir"]])
    assert result.exit_code == 0, result.output
    status = CliRunner().invoke(cli, ["buffer", "status", "--dir", str(tmp_path / "agent" / "wal"), "--json"])
    assert status.exit_code == 0 and '"records":0' in status.output, status.output
