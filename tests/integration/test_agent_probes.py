"""`kubetrail agent` serves /healthz and /metrics on telemetry.listen_address, as `run` and
`collector` do: the DaemonSet's liveness/readiness probes and Prometheus scrape depend on it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = [pytest.mark.integration]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stored_container_lines(base: str) -> float:
    try:
        text = httpx.get(base + "/metrics", timeout=5).text
    except httpx.TransportError:
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("kubetrail_store_records_total{") and 'kind="container"' in line)


def test_agent_answers_probes_and_counts_what_it_stored(tmp_path: Path) -> None:
    container = tmp_path / "pods" / "shop_web-1_0000-uid" / "web"
    container.mkdir(parents=True)
    (container / "0.log").write_text("".join(
        f"2024-05-01T10:00:0{i}.000000000Z stdout F line {i}\n" for i in range(3)))
    port = free_port()
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "sources": [{"type": "cri_logs", "root": str(tmp_path / "pods"), "node": "node-a"}],
        "telemetry": {"listen_address": f"127.0.0.1:{port}"}}))
    err = tmp_path / "agent.err"
    with err.open("w") as err_fh:
        proc = subprocess.Popen([sys.executable, "-m", "kubetrail", "agent", "--config", str(cfg)],
                                stdout=subprocess.DEVNULL, stderr=err_fh)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while stored_container_lines(base) < 3 and time.monotonic() < deadline:
            assert proc.poll() is None, err.read_text()
            time.sleep(0.2)
        assert stored_container_lines(base) == 3, err.read_text()
        assert httpx.get(base + "/healthz", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
