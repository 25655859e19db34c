"""Detection in event-time order: the reorder buffer, late records, restarts, audit-ID reuse."""

from __future__ import annotations

import random
from pathlib import Path

import orjson

from kubetrail.alerts.store import list_alerts
from kubetrail.detect.reuse import RULE as REUSE
from kubetrail.ordering import ReorderBuffer
from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import Decoded, Record, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.store import Store, open_store
from kubetrail.testing import make_event

SRC = SourceRef(cluster="t", stream="audit-webhook:apiserver-1")
S = 1_000_000_000


def ts(sec: float) -> str:
    whole = int(sec)
    return f"2024-05-01T10:{whole // 60:02d}:{whole % 60:02d}.{int(round((sec - whole) * 1e6)):06d}Z"


def rec(i: int, sec: float, **kw: object) -> Record:
    r = to_record(Decoded(make_event(f"id-{i}", time=ts(sec), name=f"p{i}", **kw), "event", str(i)), SRC)  # type: ignore[arg-type]
    r.leaf_index = i
    return r


def test_release_is_in_event_time_order_behind_the_watermark() -> None:
    buf = ReorderBuffer(lateness_ns=10 * S)
    records = [rec(i, float(i)) for i in range(30)]
    shuffled = records[:]
    random.Random(7).shuffle(shuffled)
    out = []
    for r in shuffled:
        assert buf.add([r]) == []  # nothing late: the whole input arrives before the watermark passes
    t0 = records[0].time
    assert buf.watermark() == t0 + 19 * S
    out += buf.ready()
    assert [e[0] - t0 for e in out] == [i * S for i in range(20)]
    assert buf.pending_from(30) == min(r.leaf_index for r in records[20:])
    out += buf.drain()
    assert [e[2] for e in out] == list(range(30)) and len(buf) == 0 and buf.pending_from(30) == 30
    late = rec(99, 5.0)
    assert buf.add([late]) == [late] and buf.late == 1  # behind what was released: late, at once
    last = records[29].time  # ties are broken by the key: behind the frontier's key is late too
    assert buf.is_late(last, "0" * 64) and not buf.is_late(last, "g") and not buf.is_late(last + 1, "0")


def test_wall_time_moves_the_watermark_when_nothing_newer_arrives() -> None:
    buf = ReorderBuffer(lateness_ns=60 * S)
    buf.add([rec(0, 0.0), rec(1, 1.0)], now_ns=1000 * S)  # arrival (wall) time 1000 s
    assert buf.ready() == []  # event time alone: 1 s − 60 s
    buf.advance(1030 * S)
    assert buf.ready() == []  # not yet held for the allowed lateness
    buf.advance(1060 * S)
    assert [e[2] for e in buf.ready()] == [0, 1]


def test_beyond_the_memory_limit_only_the_position_is_held() -> None:
    buf = ReorderBuffer(lateness_ns=S, memory_limit=2)
    buf.add([rec(i, float(i)) for i in range(5)])
    held = buf.drain()
    assert [e[3] is not None for e in held] == [True, True, False, False, False]
    assert [e[2] for e in held] == [0, 1, 2, 3, 4]


def settings(data: Path, lateness: float, **stateful: object) -> None:
    data.mkdir(parents=True, exist_ok=True)
    doc = {"allowed_lateness_secs": lateness, "stateful": {"learning_secs": 0, **stateful}}
    (data / "detect.yaml").write_text(orjson.dumps(doc).decode())


def denied(i: int, sec: float, ip: str = "203.0.113.9") -> dict:
    return make_event(f"deny-{i}", time=ts(sec), user="system:anonymous", code=401, verb="list",
                      resource="secrets", source_ips=[ip], stage="ResponseStarted")


def alert_set(store: Store) -> set[tuple[str, str, frozenset[str]]]:
    return {(a.rule, a.subject, frozenset(e.key for e in a.evidence)) for a in list_alerts(store)}


def ingest(data: Path, batches: list[list[dict]], live: bool = False) -> set[tuple[str, str, frozenset[str]]]:
    pipe = open_pipeline(Options(data_dir=str(data), live=live))
    try:
        for batch in batches:
            pipe.commit([to_record(Decoded(e, "eventlist", "x"), SRC) for e in batch])
    finally:
        pipe.close()
    try:
        return alert_set(pipe.store)
    finally:
        pipe.store.close()


def test_denied_burst_and_sequences_do_not_depend_on_batch_order(tmp_path: Path) -> None:
    events = [denied(i, i * 3.0) for i in range(12)]  # 10 within 60 s: one burst alert
    events += [make_event("csr-c", verb="create", resource="certificatesigningrequests", name="csr-1",
                          user="mallory", time=ts(40.0), api_group="certificates.k8s.io"),
               make_event("csr-a", verb="update", resource="certificatesigningrequests", name="csr-1",
                          subresource="approval", user="mallory", time=ts(50.0), api_group="certificates.k8s.io")]
    batches = [events[i:i + 3] for i in range(0, len(events), 3)]
    settings(tmp_path / "in-order", 300)
    expected = ingest(tmp_path / "in-order", batches)
    rules = {a[0] for a in expected}
    assert "K8s Burst of Denied Requests" in rules and "K8s CSR Created and Approved by the Same Identity" in rules
    for seed in range(3):
        shuffled = batches[:]
        random.Random(seed).shuffle(shuffled)
        settings(tmp_path / f"s{seed}", 300)
        assert ingest(tmp_path / f"s{seed}", shuffled) == expected, seed
    settings(tmp_path / "no-buffer", 0)  # without the buffer the order matters: the test can fail
    reverse = ingest(tmp_path / "no-buffer", list(reversed(batches)))
    assert reverse != expected


def test_a_late_record_is_stored_counted_and_marked(tmp_path: Path) -> None:
    data = tmp_path / "d"
    settings(data, 60)
    burst = [denied(i, 100 + i) for i in range(10)]  # a denied burst at 100–109 s
    filler = [make_event(f"f-{i}", time=ts(200 + i * 10)) for i in range(30)]  # event time moves on to 490 s
    pipe = open_pipeline(Options(data_dir=str(data)))
    try:
        pipe.commit([to_record(Decoded(e, "event", "x"), SRC) for e in burst + filler])
        before = {a.rule: a for a in list_alerts(pipe.store)}
        assert "K8s Burst of Denied Requests" in before  # released: 109 s < 490 s − 60 s
        exec_late = make_event("late-exec", verb="create", resource="pods", subresource="exec", name="web",
                               user="mallory", time=ts(105), namespace="shop",
                               requestURI="/api/v1/namespaces/shop/pods/web/exec?command=sh")
        late = [denied(50, 104.5), exec_late]
        stored = pipe.commit([to_record(Decoded(e, "event", "late"), SRC) for e in late])
        assert len(stored) == 2  # stored like any other record
        assert pipe.store.counters().get("late") == 2
        alerts = list_alerts(pipe.store)
        burst_alert = next(a for a in alerts if a.rule == "K8s Burst of Denied Requests")
        assert burst_alert.fields.get("late_events_after_decision") == 2  # decided without them: said so
        # a rule match depends on its record alone: raised on arrival, like any other, never marked late
        from_late = [a for a in alerts if any(e.key == stored[1].key for e in a.evidence)]
        assert from_late and all(a.origin == "rule" and "late" not in a.fields for a in from_late)
    finally:
        pipe.close()
        pipe.store.close()


def test_a_live_restart_keeps_what_was_held(tmp_path: Path) -> None:
    events = [denied(i, i * 2.0) for i in range(10)]
    settings(tmp_path / "once", 300)
    expected = ingest(tmp_path / "once", [events])
    data = tmp_path / "restart"
    settings(data, 300)
    held = ingest(data, [events[:6]], live=True)  # held, not drained: a live process stopped
    assert "K8s Burst of Denied Requests" not in {a[0] for a in held}  # rule matches were raised on arrival
    assert ingest(data, [events[6:]]) == expected  # the next start holds them again, in order


def variant(ev: dict, user: str) -> dict:
    return {**ev, "user": {"username": user, "groups": ["system:authenticated"]}}


def test_a_reused_audit_id_is_stored_and_alerted_whichever_comes_first(tmp_path: Path) -> None:
    real = make_event("same-id", verb="delete", resource="pods", name="web", user="alice", time=ts(10))
    fake = variant(real, "mallory")
    results = []
    for n, order in enumerate([([real], [fake]), ([fake], [real])]):
        data = tmp_path / f"d{n}"
        settings(data, 300)
        alerts = ingest(data, list(order))
        reuse = {a for a in alerts if a[0] == REUSE}
        assert len(reuse) == 1, alerts
        results.append(reuse)
        store = open_store(str(data))
        assert store.size() == 2
        store.close()
    assert results[0] == results[1]
    (rule, subject, keys), = results[0]
    assert len(keys) == 2 and subject in ("alice", "mallory")


def test_a_truncated_copy_is_not_reuse(tmp_path: Path) -> None:
    full = make_event("t-1", verb="create", resource="configmaps", name="c", time=ts(5), level="Request",
                      requestObject={"kind": "ConfigMap", "data": {"a": "b"}})
    cut = {k: v for k, v in full.items() if k != "requestObject"}
    cut["annotations"] = {"audit.k8s.io/truncated": "true"}
    settings(tmp_path / "d", 300)
    alerts = ingest(tmp_path / "d", [[full], [cut]])
    assert not {a for a in alerts if a[0] == REUSE}


def test_a_path_that_only_delivers_duplicates_is_not_silent(tmp_path: Path) -> None:
    """The log file and the webhook carry the same events: the one that loses the race stores
    nothing, and must still count as alive for the wall-clock silence check."""
    from kubetrail.alerts.config import StatefulConfig
    from kubetrail.detect.stateful.silence import AuditSilence
    from kubetrail.detect.stateful.state import StateStore

    webhook = SourceRef(cluster="t", stream="audit-webhook:apiserver-1")
    d = AuditSilence(StateStore(None), StatefulConfig(silence_secs=10), clock=lambda: 0)
    first = to_record(Decoded(make_event("w-1", time=ts(1)), "eventlist", "1"), webhook)
    d.observe(first)  # stored once via the webhook: tracked from now on
    d.delivered({webhook.label()}, 9 * S)  # later only duplicates of what the file stored
    assert d.tick(15 * S) == []
    assert [a.rule for a in d.tick(20 * S)] == ["Audit Log Silence"]  # 11 s after the last delivery

    calls: list[set[str]] = []

    class Spy:
        def consume(self, records: list, store: object) -> None:
            pass

        def delivered(self, labels: set[str]) -> None:
            calls.append(labels)

        def close(self) -> None:
            pass

    pipe = open_pipeline(Options(data_dir=str(tmp_path / "d"), detect=False))
    try:
        pipe.consumers.append(Spy())
        ev = make_event("dup-1", time=ts(2))
        pipe.commit([to_record(Decoded(ev, "event", "f"), SourceRef(cluster="t", stream="audit-file:/a.log"))])
        assert calls == []  # stored: consume is the signal
        pipe.commit([to_record(Decoded(dict(ev), "eventlist", "w"), webhook)])
        assert calls == [{webhook.label()}]
    finally:
        pipe.close()
        pipe.store.close()


def test_loss_declarations_reach_the_transit_detector_through_the_pipeline(tmp_path: Path) -> None:
    """Loss records (the WAL's declared drops) go through the same event-time order as audit records."""
    from kubetrail.buffer.frames import LossFrame, LossRange
    from kubetrail.buffer.policy import loss_records

    (loss,) = loss_records(LossFrame("dropped", [LossRange(SRC.label(), 11, 20, 10, "")], 3), rec(0, 5.0).time)
    settings(tmp_path / "d", 300)
    pipe = open_pipeline(Options(data_dir=str(tmp_path / "d")))
    try:
        pipe.commit([loss])
    finally:
        pipe.close()
    try:
        rules = {a.rule for a in list_alerts(pipe.store)}
    finally:
        pipe.store.close()
    assert "Records Lost in Transit" in rules, rules
