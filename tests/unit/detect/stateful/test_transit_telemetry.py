"""Seq gaps found by the Records Lost in Transit detector move kubetrail_source_seq_gaps_total and
kubetrail_source_records_lost_total (declared by the agent, or found missing after the grace time)."""

from __future__ import annotations

from kubetrail import telemetry
from kubetrail.alerts.config import StatefulConfig
from kubetrail.buffer.frames import LossFrame, LossRange
from kubetrail.buffer.policy import loss_records
from kubetrail.detect.stateful.state import StateStore
from kubetrail.detect.stateful.transit import TransitGaps
from kubetrail.stages.seal import Seal
from kubetrail.testing import capture_events, make_records

SRC = "node-a/audit-file:/a.log"
S = 1_000_000_000


def test_declared_and_undeclared_gaps_are_events() -> None:
    now = [0]
    d = TransitGaps(StateStore(None), StatefulConfig(transit_grace_secs=10), lambda: now[0])
    recs = make_records(60, source=SRC)
    Seal().seal(SRC, recs)
    for i, r in enumerate(recs):
        r.leaf_index = i
    (loss,) = loss_records(LossFrame("dropped", [LossRange(SRC, 11, 20, 10, recs[19].chain)], 3), 7)
    with capture_events() as seen:
        for r in recs[:10] + [loss] + recs[20:40] + recs[45:]:  # 11..20 declared, 41..45 never arrive
            d.observe(r)
        now[0] = 11 * S
        d.tick()
    gaps = [(e.source, e.first_seq, e.last_seq) for e in seen if isinstance(e, telemetry.SourceSeqGapDetected)]
    assert gaps == [(SRC, 11, 20), (SRC, 41, 45)]
