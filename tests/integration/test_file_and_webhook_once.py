"""`kubetrail run` with the log file and the webhook of one apiserver on one data dir (what
docs/webhook.md recommends): a real HTTPS client POSTs EventList batches while the same events are
written to the file, in other chunks and another order, with retried batches — each event is stored
exactly once, and the trail verifies."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
import yaml
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.store import open_store
from kubetrail.testing import make_event

sys.path.insert(0, os.path.dirname(__file__))
import test_audit_webhook as webhook_tests  # noqa: E402 - its test PKI and HTTPS client

pki = webhook_tests.pki  # the module-scoped PKI fixture (CA, server and apiserver client certificates)

pytestmark = pytest.mark.integration
N = 240


def events() -> list[dict]:
    return [make_event(f"two-paths-{i:04d}", user=f"user-{i % 7}", name=f"p{i}",
                       time=f"2024-05-01T10:{i // 60:02d}:{i % 60:02d}.{i:06d}Z") for i in range(N)]


def test_file_and_webhook_together_store_each_event_once(pki: Path, tmp_path: Path) -> None:
    evs = events()
    log = tmp_path / "audit.log"
    log.write_bytes(b"")
    data = tmp_path / "data"
    config = tmp_path / "kubetrail.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(data), "cluster": "test", "checkpoint_interval_secs": 0.2,
        "sources": [{"type": "audit_file", "path": str(log)},
                    {"type": "audit_webhook", "listen_address": "127.0.0.1:0",
                     "tls_cert_file": str(pki / "server.crt"), "tls_key_file": str(pki / "server.key"),
                     "client_ca_file": str(pki / "ca.crt"), "client_names": ["kube-apiserver"]}]}))
    proc = subprocess.Popen([sys.executable, "-m", "kubetrail", "run", "--config", str(config)],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        seen, m = [], None
        for line in proc.stderr:
            seen.append(line)
            m = re.search(r"audit_webhook listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                break
        assert m, "".join(seen)
        port = int(m.group(1))

        def write_file() -> None:  # the log backend: lines in order, in uneven chunks
            rng = random.Random(1)
            i = 0
            while i < N:
                n = rng.randint(1, 30)
                with log.open("ab") as fh:
                    fh.write(b"".join(orjson.dumps(e) + b"\n" for e in evs[i:i + n]))
                i += n
                time.sleep(0.02)

        statuses: list[int] = []
        rng = random.Random(2)
        batches = [evs[i:i + 25] for i in range(0, N, 25)]
        order = batches[:]
        rng.shuffle(order)
        order += rng.sample(batches, 3)  # retries after a timeout the receiver did process
        deliveries = N + sum(len(b) for b in order)  # every event from the file, and from the webhook

        def post_batches() -> None:  # the webhook backend: EventLists, out of order, some sent twice
            for b in order:
                items = [{k: v for k, v in e.items() if k not in ("kind", "apiVersion")} for e in b]
                body = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})
                statuses.append(webhook_tests._post_as_apiserver(pki, port, body))

        threads = [threading.Thread(target=write_file), threading.Thread(target=post_batches)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert statuses and set(statuses) == {200}, statuses
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open_store(str(data), create=False) as probe:
                counters = probe.counters()
            if counters.get("stored", 0) + counters.get("duplicates", 0) >= deliveries:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(timeout=30) == 0, rest
        assert "Traceback" not in rest
    finally:
        webhook_tests._reap(proc)
    with open_store(str(data), create=False) as store:
        records = list(store.records_by_index(0, store.size()))
        ids = [r.meta.audit_id for r in records if r.kind == "audit"]
        assert sorted(ids) == sorted(e["auditID"] for e in evs)  # each event once
        counters = store.counters()
        assert counters["stored"] == N and counters["duplicates"] == deliveries - N
        streams = {r.source.stream.split(":")[0] for r in records}
        assert streams <= {"audit-file", "audit-webhook"} and streams  # whichever path came first
    r = CliRunner().invoke(cli, ["verify", "--data", str(data)])
    assert r.exit_code == 0, r.output
