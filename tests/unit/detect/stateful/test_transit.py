"""Records Lost in Transit: seq gaps per source, declared (loss records) or found missing."""

from __future__ import annotations

import orjson

from kubetrail.alerts.config import StatefulConfig
from kubetrail.buffer.frames import LossFrame, LossRange
from kubetrail.buffer.policy import loss_records
from kubetrail.detect.stateful.state import StateStore
from kubetrail.detect.stateful.transit import ALTERED, RULE, TransitGaps
from kubetrail.stages.seal import Seal
from kubetrail.testing import make_records

SRC = "node-a/audit-file:/a.log"
S = 1_000_000_000


class Clock:
    def __init__(self) -> None:
        self.t = 0

    def __call__(self) -> int:
        return self.t


def sealed(n: int) -> list:
    recs = make_records(n, source=SRC)
    Seal().seal(SRC, recs)
    for i, r in enumerate(recs):
        r.leaf_index = i
    return recs


def detector(clock: Clock, grace: float = 10.0) -> TransitGaps:
    return TransitGaps(StateStore(None), StatefulConfig(transit_grace_secs=grace), clock)


def observe(d: TransitGaps, records: list) -> list:
    return [a for r in records for a in d.observe(r)]


def test_in_order_records_raise_nothing() -> None:
    clock = Clock()
    d = detector(clock)
    assert observe(d, sealed(50)) == []
    clock.t = 100 * S
    assert d.tick() == []


def test_an_undeclared_gap_is_alerted_after_the_grace_time_with_its_range() -> None:
    clock = Clock()
    d = detector(clock)
    recs = sealed(20)
    assert observe(d, recs[:5] + recs[9:]) == []  # seqs 6..9 missing
    clock.t = 5 * S
    assert d.tick() == []
    clock.t = 11 * S
    (alert,) = d.tick()
    assert alert.rule == RULE
    assert {k: alert.fields[k] for k in ("source", "first_seq", "last_seq", "declared_drop")} == {
        "source": SRC, "first_seq": 6, "last_seq": 9, "declared_drop": False}
    assert alert.evidence[0].key == recs[9].key
    assert d.tick() == []  # once
    assert d.totals() == {SRC: {"declared": 0, "undeclared": 4}}


def test_records_arriving_out_of_order_within_the_grace_time_are_no_gap() -> None:
    clock = Clock()
    d = detector(clock)
    recs = sealed(20)
    observe(d, recs[10:] + recs[:10])
    clock.t = 60 * S
    assert d.tick() == []


def test_a_loss_record_is_alerted_at_once_as_a_declared_drop() -> None:
    clock = Clock()
    d = detector(clock)
    recs = sealed(30)
    (loss,) = loss_records(LossFrame("dropped", [LossRange(SRC, 11, 20, 10, recs[19].chain)], 3), 7)
    alerts = observe(d, recs[:10] + [loss] + recs[20:])
    assert [(a.rule, a.fields["first_seq"], a.fields["last_seq"], a.fields["declared_drop"], a.fields["reason"])
            for a in alerts] == [(RULE, 11, 20, True, "dropped")]
    clock.t = 100 * S
    assert d.tick() == []
    assert orjson.loads(loss.body)["count"] == 10


def test_a_declaration_after_the_later_records_still_closes_the_gap() -> None:
    clock = Clock()
    d = detector(clock)
    recs = sealed(30)
    (loss,) = loss_records(LossFrame("corrupt", [LossRange(SRC, 11, 20, 10)]), 7)
    alerts = observe(d, recs[:10] + recs[20:] + [loss])
    assert [a.fields["declared_drop"] for a in alerts] == [True]
    clock.t = 100 * S
    assert d.tick() == []


def test_a_record_that_does_not_follow_the_chain_is_altered() -> None:
    d = detector(Clock())
    recs = sealed(5)
    recs[3].chain = b"\x00" * 32
    alerts = observe(d, recs)
    assert [(a.rule, a.fields["seq"]) for a in alerts] == [(ALTERED, 4)]


def test_unsealed_records_are_not_tracked() -> None:
    d = detector(Clock())
    assert observe(d, make_records(5)) == []
    assert d.totals() == {}


def test_records_the_trail_already_held_still_count_as_arrived(tmp_path) -> None:
    """The apiserver resends a batch (or a second path delivers it): the same events come sealed
    again under new seqs, the store refuses their keys, and those seqs are no gap."""
    from kubetrail.pipeline import Options, open_pipeline

    pipe = open_pipeline(Options(data_dir=str(tmp_path / "d")))
    try:
        seal = Seal()
        first = make_records(5, source=SRC)
        seal.commit(SRC, seal.seal(SRC, first))
        pipe.notify(pipe.store_batch(first))
        again = make_records(5, source=SRC)  # the same five events, sealed a second time: seqs 6..10
        seal.commit(SRC, seal.seal(SRC, again))
        assert pipe.store_batch(again) == []
        more = make_records(2, start=5, source=SRC)
        seal.commit(SRC, seal.seal(SRC, more))
        pipe.notify(pipe.store_batch(more))
        transit = next(c for c in pipe.consumers if hasattr(c, "arrival")).arrival[0]
        state = transit.state.get("transit", SRC)
        assert state["next"] == 13 and state["pending"] == [] and state["above"] == []
        assert transit.tick(10**20) == []
    finally:
        pipe.close()
        pipe.store.close()
