"""The agent's commit into the WAL, as the audit webhook uses it: 200 only once the batch is durable
(sealed, fsync'd), 503 (the apiserver retries) when the WAL stays full, nothing half-written."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson

from kubetrail.buffer import Wal
from kubetrail.pipeline import AgentWriter, RejectsFile
from kubetrail.record import SourceRef
from kubetrail.sources.audit_webhook import WebhookBatches
from kubetrail.stages.redaction_key import load_or_create
from kubetrail.testing import make_event


def body(start: int, n: int) -> bytes:
    items = [make_event(f"w-{i:06d}", name=f"p-{i}", requestObject={"pad": "x" * 2000}) for i in range(start, start + n)]
    return orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})


def test_webhook_into_the_wal_answers_200_when_durable_and_503_when_full(tmp_path: Path) -> None:
    wal = Wal(str(tmp_path / "wal"), 1 << 20, segment_bytes=64 << 10)
    try:
        writer = AgentWriter(wal, RejectsFile(str(tmp_path)), threading.Event(), load_or_create(str(tmp_path / "k")))
        batches = WebhookBatches(lambda d, r, s, p: writer.commit(d, r, s, p, timeout=0.2),
                                 SourceRef(cluster="c", node="cp-1"))
        status, answer = batches.accept(body(0, 20), "apiserver", "10.0.0.1")
        assert (status, answer["events"]) == (200, 20)
        assert wal.records() == 20  # durable before the answer
        sent = 20
        while (status := batches.accept(body(sent, 20), "apiserver", "10.0.0.1")[0]) == 200:
            sent += 20
        assert status == 503 and wal.records() == sent  # the refused batch left nothing behind
        entries = wal.read(max_frames=1000)
        assert [r.seq for e in entries for r in e.records] == list(range(1, sent + 1))
        assert {r.source.label() for e in entries for r in e.records} == {"c/cp-1/audit-webhook:apiserver"}
        wal.ack(entries)
        assert batches.accept(body(sent, 20), "apiserver", "10.0.0.1")[0] == 200  # room again
    finally:
        wal.close()
