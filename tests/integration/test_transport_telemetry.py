"""The distributed shape reports itself: the agent's WAL size, and `kubetrail collector` serving
/healthz and /metrics on telemetry.listen_address with broker lag and what it stored."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from transport_util import agent_config, audit_lines, collector_config, names

from kubetrail import telemetry
from kubetrail.config import parse
from kubetrail.pipeline import run_agent
from kubetrail.testing import capture_events

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metrics(base: str) -> dict[str, float]:
    try:
        text = httpx.get(base + "/metrics", timeout=5).text
    except httpx.TransportError:
        return {}
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def wait_for(cond, secs: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return bool(cond())


def test_agent_wal_and_collector_metrics(tmp_path: Path, nats_server) -> None:  # type: ignore[no-untyped-def]
    stream, subject, durable = names("TEL")
    log = tmp_path / "audit.log"
    log.write_bytes(audit_lines(0, 300))
    stop = threading.Event()
    with capture_events() as seen:
        agent = threading.Thread(target=run_agent, args=(parse(agent_config(tmp_path, nats_server.url, stream, subject,
                                                                              log)), stop, lambda _m: None))
        agent.start()
        try:
            port = free_port()
            col = collector_config(tmp_path, nats_server.url, stream, durable)
            col["telemetry"] = {"listen_address": f"127.0.0.1:{port}"}
            cfg = tmp_path / "collector.yaml"
            cfg.write_text(yaml.safe_dump(col))
            proc = subprocess.Popen([sys.executable, "-m", "kubetrail", "collector", "--config", str(cfg)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            base = f"http://127.0.0.1:{port}"
            try:
                stored = "kubetrail_store_records_total"
                assert wait_for(lambda: sum(v for k, v in metrics(base).items() if k.startswith(stored)) == 300), \
                    proc.stderr.read() if proc.poll() is not None else metrics(base)
                assert httpx.get(base + "/healthz", timeout=5).status_code == 200
                lag = f'kubetrail_broker_lag_records{{stream="{stream}"}}'
                assert wait_for(lambda: metrics(base).get(lag) == 0.0), metrics(base)
                assert metrics(base)["kubetrail_trail_size_leaves"] == 300
            finally:
                proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        finally:
            stop.set()
            agent.join(60)
    sizes = [e.size_bytes for e in seen if isinstance(e, telemetry.BufferSizeMeasured)]
    assert sizes and max(sizes) > 0  # the WAL held the records until the broker had them
