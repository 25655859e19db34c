"""Sinks against real HTTP servers on 127.0.0.1: webhook, Slack, Alertmanager v2; one down, then back."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kubetrail.alerts.alert import Alert, Evidence
from kubetrail.alerts.config import parse_settings
from kubetrail.alerts.outbox import Outbox
from kubetrail.alerts.store import record_alert
from kubetrail.store.sqlite import Store
from kubetrail.store.testing import execute as sql

pytestmark = pytest.mark.integration


class Receiver:
    """A local HTTP server that records JSON bodies; answers ``status``."""

    def __init__(self, port: int = 0, status: int = 200, body: bytes = b"ok") -> None:
        self.requests: list[tuple[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append((self.path, json.loads(data)))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alert(n: int) -> Alert:
    return Alert(rule="Exec or Attach Into Pod", priority="Notice", time=1_700_000_000_000_000_000 + n,
                 subject="alice", output=f"exec #{n}", tags=["k8s", "T1609"],
                 evidence=[Evidence(key=f"k{n}", audit_id=f"a{n}", stage="ResponseStarted", leaf_index=n)])


class Clock:
    def __init__(self) -> None:
        self.t = time.time_ns() + 10**9

    def __call__(self) -> int:
        return self.t


def test_webhook_slack_alertmanager_formats(data_dir: str) -> None:
    hook, slack, am = Receiver(), Receiver(), Receiver(body=b"")
    try:
        settings = parse_settings({"sinks": [
            {"name": "hook", "type": "webhook", "url": f"http://127.0.0.1:{hook.port}/k"},
            {"name": "slack", "type": "slack", "url": f"http://127.0.0.1:{slack.port}/services/T/B/X"},
            {"name": "am", "type": "alertmanager", "url": f"http://127.0.0.1:{am.port}"}]})
        store = Store.open(data_dir)
        record_alert(store, _alert(1), settings)
        report = Outbox(store, settings).deliver_due()
        assert (report.delivered, report.pending) == (3, 0)
        path, body = hook.requests[0]
        assert body["rule"] == "Exec or Attach Into Pod" and body["evidence"][0]["leaf_index"] == 1
        path, body = slack.requests[0]
        assert path == "/services/T/B/X" and "exec #1" in body["text"] and body["blocks"]
        path, body = am.requests[0]
        assert path == "/api/v2/alerts" and isinstance(body, list)
        assert body[0]["labels"]["alertname"] == "Exec or Attach Into Pod" and body[0]["startsAt"].endswith("Z")
    finally:
        for r in (hook, slack, am):
            r.close()


def test_down_sink_keeps_alerts_and_delivers_when_back(data_dir: str) -> None:
    port = _free_port()
    settings = parse_settings({"sinks": [{"name": "hook", "type": "webhook", "url": f"http://127.0.0.1:{port}/",
                                          "timeout_secs": 2}],
                               "suppress": {"window_secs": 0}})  # three alerts, not one aggregated
    store = Store.open(data_dir)
    clock = Clock()
    box = Outbox(store, settings, clock=clock)
    for n in range(3):
        record_alert(store, _alert(n), settings)
    report = box.deliver_due()  # nobody listens: refused, retried later, nothing lost
    assert report.delivered == 0 and report.pending == 3 and "unreachable" in report.errors["hook"]
    assert box.deliver_due().failed == 0  # backing off: the failed row is not due yet
    receiver = Receiver(port=port)
    try:
        clock.t += 3_600 * 10**9
        report = box.deliver_due()
        assert report.delivered == 3 and report.pending == 0
        assert [b["output"] for _, b in receiver.requests] == ["exec #0", "exec #1", "exec #2"]
    finally:
        receiver.close()


def test_http_error_is_retried(data_dir: str) -> None:
    bad = Receiver(status=503)
    try:
        settings = parse_settings({"sinks": [{"name": "am", "type": "alertmanager",
                                              "url": f"http://127.0.0.1:{bad.port}"}]})
        store = Store.open(data_dir)
        record_alert(store, _alert(1), settings)
        report = Outbox(store, settings).deliver_due()
        assert report.pending == 1 and "HTTP 503" in report.errors["am"]
        row = sql(store, "SELECT attempts, last_error FROM outbox").fetchone()
        assert row[0] == 1 and "503" in row[1] and "127.0.0.1" in row[1]
    finally:
        bad.close()


def test_ingest_is_not_blocked_by_a_down_sink(data_dir: str, tmp_path: Any) -> None:
    """End to end: `ingest` with a dead webhook finishes, alerts are stored and stay in the outbox."""
    import os

    from click.testing import CliRunner

    from kubetrail.cli import cli

    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, "detect.yaml"), "w") as fh:
        fh.write(f"sinks:\n  - {{name: hook, type: webhook, url: 'http://127.0.0.1:{_free_port()}/'}}\n")
    ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": "x1",
          "stage": "ResponseComplete", "verb": "create", "requestURI": "/api/v1/namespaces/falco/daemonsets/falco",
          "user": {"username": "mallory"}, "sourceIPs": ["10.0.0.9"],
          "objectRef": {"resource": "namespaces", "name": "falco"}, "responseStatus": {"code": 200},
          "requestReceivedTimestamp": "2025-01-01T00:00:00Z", "stageTimestamp": "2025-01-01T00:00:00Z"}
    ev["verb"] = "delete"
    f = tmp_path / "audit.log"
    f.write_text(json.dumps(ev) + "\n")
    r = CliRunner().invoke(cli, ["ingest", "--data", data_dir, str(f)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["alerts", "--json", "--data", data_dir])
    rules = [json.loads(line)["rule"] for line in r.output.splitlines()]
    assert "Security or Logging Tooling Tampered" in rules
    store = Store.open(data_dir)
    pending = sql(store, "SELECT COUNT(*) FROM outbox WHERE delivered_ns IS NULL").fetchone()[0]
    assert pending == len(rules)
