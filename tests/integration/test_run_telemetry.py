"""`kubetrail run` with `telemetry.listen_address`: /metrics moves by the right amounts during an
ingest, and a source that stops shows in the metrics and as an Audit Log Silence alert."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from kubetrail.testing import make_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def wait_for(check: Callable[[], bool], secs: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Run:
    def __init__(self, tmp_path: Path) -> None:
        self.log = tmp_path / "audit" / "audit.log"
        self.log.parent.mkdir()
        self.log.touch()
        self.data = tmp_path / "data"
        self.data.mkdir()
        # released from the reorder buffer after 1 s (not the default 300) so that silence is seen soon
        (self.data / "detect.yaml").write_text(yaml.safe_dump({"stateful": {"silence_secs": 3},
                                                               "allowed_lateness_secs": 1}))
        self.port = free_port()
        cfg = tmp_path / "kubetrail.yaml"
        cfg.write_text(yaml.safe_dump({
            "data_dir": str(self.data), "checkpoint_interval_secs": 0.5,
            "sources": [{"type": "audit_file", "path": str(self.log), "poll_ms": 50}],
            "telemetry": {"listen_address": f"127.0.0.1:{self.port}"}}))
        self.proc = subprocess.Popen([sys.executable, "-m", "kubetrail", "run", "--config", str(cfg)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.base = f"http://127.0.0.1:{self.port}"
        wait_for(self._up, 60, "the telemetry endpoint")

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.proc.communicate()[1]
        try:
            return httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def metrics(self) -> dict[str, float]:
        resp = httpx.get(f"{self.base}/metrics", timeout=5)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        return parse(resp.text)

    def write(self, lines: list[str]) -> None:
        with self.log.open("a") as fh:
            fh.write("".join(line + "\n" for line in lines))

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    r = Run(tmp_path)
    try:
        yield r
    finally:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.communicate()


def test_metrics_move_by_what_was_ingested_and_silence_is_seen(run: Run) -> None:
    source = f'source="audit-file:{run.log}"'
    records = f'kubetrail_store_records_total{{kind="audit",{source}}}'
    received = f'kubetrail_source_records_total{{kind="audit",{source}}}'
    dups = f'kubetrail_store_duplicates_total{{kind="audit",{source}}}'
    rejected = f'kubetrail_source_records_rejected_total{{kind="audit",{source}}}'
    before = run.metrics()
    assert records not in before and before["kubetrail_webhook_events_total"] == 0

    events = [json.dumps(make_event(f"00000000-0000-0000-0000-0000000001{i:02}", time=time.strftime(
        "%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()))) for i in range(7)]
    run.write(events)
    wait_for(lambda: run.metrics().get(records) == 7, what="7 stored records in /metrics")
    m = run.metrics()
    assert m[received] == 7 and m.get(dups, 0) == 0
    assert m["kubetrail_trail_size_leaves"] == 7
    assert m["kubetrail_store_commit_duration_seconds_count"] >= 1

    run.write(events[:4] + ["this is not JSON"])  # redelivery of 4 (a rotated copy, say) and a bad line
    wait_for(lambda: run.metrics().get(dups) == 4 and run.metrics().get(rejected) == 1, what="4 dups, 1 reject")
    m = run.metrics()
    assert m[records] == 7 and m[received] == 11
    wait_for(lambda: run.metrics().get("kubetrail_trail_checkpoint_size_leaves") == 7, what="a checkpoint of 7")

    # The source stops: after silence_secs (3 s) the wall-clock silence detector raises the alert.
    silence = 'kubetrail_detect_alerts_total{priority="Critical",rule="Audit Log Silence"}'
    wait_for(lambda: run.metrics().get(silence) == 1, secs=30, what="the Audit Log Silence alert")
    m = run.metrics()
    last_seen = m[f'kubetrail_source_last_record_timestamp_seconds{{kind="audit",{source}}}']
    assert time.time() - last_seen >= 2  # the redelivered batch came a moment after the last stored one
    time.sleep(1)
    assert run.metrics()[f'kubetrail_source_last_record_timestamp_seconds{{kind="audit",{source}}}'] == last_seen
    assert 0 <= m["kubetrail_trail_checkpoint_age_seconds"] < 5  # still signing while silent
    code, err = run.stop()
    assert code == 0, err
    alerts = subprocess.run([sys.executable, "-m", "kubetrail", "alerts", "--data", str(run.data), "--json"],
                            capture_output=True, text=True, check=True).stdout
    assert "Audit Log Silence" in alerts and str(run.log) in alerts
