"""The node WAL reports its size and every record it drops as telemetry (kubetrail_buffer_*)."""

from __future__ import annotations

from pathlib import Path

import orjson

from kubetrail import telemetry
from kubetrail.buffer import Wal
from kubetrail.stages.seal import Seal
from kubetrail.testing import capture_events, make_records

SRC = "node-a/audit-file:/a.log"


def test_size_follows_appends_and_acks_and_drops_are_counted(tmp_path: Path) -> None:
    wal = Wal(str(tmp_path), 256 << 10, when_full="drop_oldest", segment_bytes=64 << 10)
    seal = Seal()
    try:
        with capture_events() as seen:
            for i in range(100):
                recs = make_records(20, start=i * 20, source=SRC)
                point = seal.seal(SRC, recs)
                wal.append(SRC, recs, {SRC: str(i)})
                seal.commit(SRC, point)
            sizes = [e.size_bytes for e in seen if isinstance(e, telemetry.BufferSizeMeasured)]
            assert len(sizes) == 100 and sizes[-1] == wal.bytes() and max(sizes) <= 256 << 10
            dropped = sum(e.count for e in seen if isinstance(e, telemetry.BufferRecordsDropped)
                          and e.reason == "when_full")
            assert dropped == wal.dropped_records > 0
            delivered = []
            while entries := wal.read():
                delivered += [r for e in entries for r in e.records]
                wal.ack(entries)
        declared = sum(orjson.loads(r.body)["count"] for r in delivered if r.kind == "loss")
        assert declared == dropped  # the metric counts exactly what the loss markers declare
        after = [e.size_bytes for e in seen if isinstance(e, telemetry.BufferSizeMeasured)][-1]
        assert after == wal.bytes() < sizes[-1]
    finally:
        wal.close()
