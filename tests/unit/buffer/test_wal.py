"""The node WAL: durable appends, delivery until acknowledged, recovery, quarantine, when_full."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import orjson
import pytest

from kubetrail.buffer import Wal
from kubetrail.buffer.frames import LossFrame, LossRange, encode_frame
from kubetrail.errors import Pushback
from kubetrail.record import Record
from kubetrail.stages.seal import Seal, chain_start, next_chain
from kubetrail.testing import make_records

SRC = "node-a/audit-file:/a.log"


def append(wal: Wal, seal: Seal, n: int, start: int, source: str = SRC, pos: str | None = None,
           timeout: float | None = None) -> list[Record]:
    recs = make_records(n, start=start, source=source)
    point = seal.seal(source, recs)
    wal.append(source, recs, {source: pos or str(start + n)}, timeout=timeout)
    seal.commit(source, point)
    return recs


def drain(wal: Wal, ack: bool = True) -> list[Record]:
    out: list[Record] = []
    while entries := wal.read():
        for e in entries:
            out.extend(e.records)
        if ack:
            wal.ack(entries)
        else:
            wal.release(entries)
            break
    return out


@pytest.fixture
def open_wal():
    """``open_wal(path, max_bytes, **kw)``: a Wal that is closed after the test (closing twice is fine)."""
    opened: list[Wal] = []

    def factory(path: Path, max_bytes: int, **kw: object) -> Wal:
        wal = Wal(str(path), max_bytes, **kw)  # type: ignore[arg-type]
        opened.append(wal)
        return wal

    yield factory
    for wal in opened:
        wal.close()


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("wal-*.seg"))


def test_append_read_ack_roundtrip(tmp_path: Path, open_wal) -> None:
    """Records come back exactly as appended, in order; positions and seal state survive a reopen."""
    wal = open_wal(tmp_path, 1 << 20)
    seal = Seal(wal.seal_state())
    sent = append(wal, seal, 10, 0) + append(wal, seal, 5, 10, pos="p15")
    got = drain(wal)
    assert [r.key for r in got] == [r.key for r in sent]
    assert got[3].body == sent[3].body and got[3].seq == 4
    wal.close()
    again = open_wal(tmp_path, 1 << 20)
    assert again.position(SRC) == "p15"
    assert again.seal_state()[SRC].seq == 15
    assert again.seal_state()[SRC].chain == sent[-1].chain
    assert drain(again) == []  # acknowledged: not delivered twice


def test_unacknowledged_frames_are_delivered_again_after_restart(tmp_path: Path, open_wal) -> None:
    """A crash between read and ack re-delivers (at-least-once), never skips."""
    wal = open_wal(tmp_path, 1 << 20)
    seal = Seal()
    append(wal, seal, 3, 0)
    assert len(drain(wal, ack=False)) == 3
    wal.close()
    assert len(drain(open_wal(tmp_path, 1 << 20))) == 3


def test_segments_rotate_and_are_deleted_once_acknowledged(tmp_path: Path, open_wal) -> None:
    wal = open_wal(tmp_path, 4 << 20, segment_bytes=64 << 10)
    seal = Seal()
    for i in range(40):
        append(wal, seal, 20, i * 20)
    assert len(segments(tmp_path)) > 3
    assert wal.status().records == 800
    assert len(drain(wal)) == 800
    assert len(segments(tmp_path)) == 1
    assert wal.status().records == 0 and wal.status().oldest_record_age_secs is None


def test_torn_tail_is_truncated_and_nothing_acknowledged_is_lost(tmp_path: Path, open_wal) -> None:
    wal = open_wal(tmp_path, 1 << 20)
    seal = Seal()
    sent = append(wal, seal, 5, 0)
    wal.close()
    seg = segments(tmp_path)[-1]
    with open(seg, "ab") as fh:  # half a frame: a write that never returned
        fh.write(b"KTF1" + os.urandom(40))
    again = open_wal(tmp_path, 1 << 20)
    assert [r.key for r in drain(again)] == [r.key for r in sent]
    assert list((tmp_path / "quarantine").glob("*.torn"))
    assert again.seal_state()[SRC].seq == 5
    s2 = Seal(again.seal_state())
    assert append(again, s2, 1, 5)[0].seq == 6


def corrupt(path: Path, at: int, n: int = 16) -> None:
    with open(path, "r+b") as fh:
        fh.seek(at)
        fh.write(b"\xff" * n)


def test_corrupted_segment_is_quarantined_declared_and_the_rest_delivered(tmp_path: Path, open_wal) -> None:
    """Bytes flipped in the middle of an old segment: that frame is lost and declared with its exact
    seq range; every other record is delivered; the note stays, so a second start declares nothing."""
    wal = open_wal(tmp_path, 8 << 20, segment_bytes=64 << 10)
    seal = Seal()
    sent = []
    for i in range(30):
        sent += append(wal, seal, 10, i * 10)
    wal.close()
    seg = segments(tmp_path)[1]
    corrupt(seg, seg.stat().st_size // 2)
    again = open_wal(tmp_path, 8 << 20, segment_bytes=64 << 10)
    got = drain(again)
    loss = [r for r in got if r.kind == "loss"]
    assert len(loss) == 1
    body = orjson.loads(loss[0].body)
    assert body["reason"] == "corrupt" and body["count"] == 10
    lost = set(range(body["first_seq"], body["last_seq"] + 1))
    delivered = {r.seq for r in got if r.kind == "audit"}
    assert delivered | lost == {r.seq for r in sent} and not delivered & lost
    st = again.status()
    assert st.quarantined_segments == 1 and st.quarantined_bytes > 0
    again.close()
    third = open_wal(tmp_path, 8 << 20, segment_bytes=64 << 10)
    assert [r for r in drain(third) if r.kind == "loss"] == []
    assert third.status().quarantined_segments == 1


def test_unreadable_segment_header_quarantines_the_whole_segment(tmp_path: Path, open_wal) -> None:
    wal = open_wal(tmp_path, 8 << 20, segment_bytes=64 << 10)
    seal = Seal()
    sent = []
    for i in range(30):
        sent += append(wal, seal, 10, i * 10)
    wal.close()
    seg = segments(tmp_path)[1]
    corrupt(seg, 0, 8)
    again = open_wal(tmp_path, 8 << 20, segment_bytes=64 << 10)
    assert (tmp_path / "quarantine" / seg.name).exists()
    got = drain(again)
    loss = [orjson.loads(r.body) for r in got if r.kind == "loss"]
    lost = {s for b in loss for s in range(b["first_seq"], b["last_seq"] + 1)}
    delivered = {r.seq for r in got if r.kind == "audit"}
    assert delivered | lost == {r.seq for r in sent} and not delivered & lost and lost


def test_corrupt_newest_frame_with_no_later_frame_moves_the_seal_past_it(tmp_path: Path, open_wal) -> None:
    """A damaged region nothing bounds is declared as the most it could hold, and seqs never repeat."""
    wal = open_wal(tmp_path, 1 << 20)
    seal = Seal()
    append(wal, seal, 5, 0)
    append(wal, seal, 5, 5)
    append(wal, seal, 5, 10, source="node-a/audit-webhook:x")
    wal.close()
    seg = segments(tmp_path)[-1]
    size = seg.stat().st_size
    with open(seg, "rb") as fh:
        data = fh.read()
    second = data.find(b"KTF1", data.find(b"KTF1", data.find(b"KTF1") + 1) + 1)  # state, batch 1, batch 2
    corrupt(seg, second + 30)
    assert seg.stat().st_size == size
    again = open_wal(tmp_path, 1 << 20)
    loss = [orjson.loads(r.body) for r in drain(again) if r.kind == "loss"]
    assert loss and loss[0]["first_seq"] == 6 and loss[0]["count"] == -1
    assert again.seal_state()[SRC].seq >= loss[0]["last_seq"]


def test_block_policy_pushes_back_then_resumes_after_ack(tmp_path: Path, open_wal) -> None:
    wal = open_wal(tmp_path, 256 << 10, segment_bytes=64 << 10)
    seal = Seal()
    n = 0
    with pytest.raises(Pushback):
        while True:
            append(wal, seal, 20, n, timeout=0.05)
            n += 20
    assert wal.bytes() <= 256 << 10
    delivered = drain(wal)
    append(wal, seal, 20, n, timeout=1)  # room again
    delivered += drain(wal)
    assert [r.seq for r in delivered] == list(range(1, n + 21))
    assert wal.dropped_records == 0


def test_block_waits_for_the_sink_from_another_thread(tmp_path: Path, open_wal) -> None:
    wal = open_wal(tmp_path, 256 << 10, segment_bytes=64 << 10)
    seal = Seal()
    got: list[Record] = []
    stop = threading.Event()

    def sink() -> None:
        while not stop.is_set():
            if wal.wait(0.05):
                entries = wal.read()
                got.extend(r for e in entries for r in e.records)
                wal.ack(entries)

    t = threading.Thread(target=sink)
    t.start()
    try:
        for i in range(100):  # ~4x max_bytes in total
            append(wal, seal, 20, i * 20)
    finally:
        while len(got) < 2000 and t.is_alive():
            wal.wait(0.05)
        stop.set()
        t.join()
    assert [r.seq for r in got] == list(range(1, 2001))


def test_drop_oldest_loses_exactly_what_its_markers_declare(tmp_path: Path, open_wal) -> None:
    wal = open_wal(tmp_path, 256 << 10, when_full="drop_oldest", segment_bytes=64 << 10)
    seal = Seal()
    for i in range(100):
        append(wal, seal, 20, i * 20)
    assert wal.bytes() <= 256 << 10
    got = drain(wal)
    declared: set[int] = set()
    for r in got:
        if r.kind == "loss":
            b = orjson.loads(r.body)
            assert b["reason"] == "dropped" and b["count"] == b["last_seq"] - b["first_seq"] + 1
            declared |= set(range(b["first_seq"], b["last_seq"] + 1))
    delivered = [r.seq for r in got if r.kind == "audit"]
    assert delivered == sorted(delivered)
    assert declared and not declared & set(delivered)
    assert declared | set(delivered) == set(range(1, 2001))
    assert wal.dropped_records == len(declared)


def test_drop_oldest_keeps_earlier_declarations_when_it_drops_again(tmp_path: Path, open_wal) -> None:
    """Broker down the whole time: drops pile up in the oldest segment, and no declaration is lost."""
    wal = open_wal(tmp_path, 256 << 10, when_full="drop_oldest", segment_bytes=64 << 10)
    seal = Seal()
    for i in range(300):
        append(wal, seal, 20, i * 20)
    wal.close()
    again = open_wal(tmp_path, 256 << 10, when_full="drop_oldest", segment_bytes=64 << 10)
    got = drain(again)
    declared = {s for r in got if r.kind == "loss"
                for s in range(orjson.loads(r.body)["first_seq"], orjson.loads(r.body)["last_seq"] + 1)}
    delivered = {r.seq for r in got if r.kind == "audit"}
    assert declared | delivered == set(range(1, 6001)) and not declared & delivered


def test_an_interrupted_drop_is_finished_at_start(tmp_path: Path, open_wal) -> None:
    """Crash after the LossFrame was written over the oldest frames but before the truncate."""
    wal = open_wal(tmp_path, 1 << 20)
    seal = Seal()
    sent = append(wal, seal, 10, 0) + append(wal, seal, 10, 10)
    start = wal.data_start[wal.active]
    wal.close()
    seg = segments(tmp_path)[-1]
    frame = encode_frame(LossFrame("dropped", [LossRange(SRC, 1, 20, 20, sent[-1].chain)], 1), 0, 1)
    corrupt_at = start
    with open(seg, "r+b") as fh:
        fh.seek(corrupt_at)
        fh.write(frame)
    again = open_wal(tmp_path, 1 << 20)
    got = drain(again)
    assert [r.kind for r in got] == ["loss"]
    assert again.seal_state()[SRC].seq == 20


def test_seal_chain_matches_its_definition() -> None:
    recs = make_records(3)
    seal = Seal()
    seal.commit(SRC, seal.seal(SRC, recs))
    c = chain_start(SRC)
    for i, r in enumerate(recs, 1):
        c = next_chain(c, i, r.key)
        assert (r.seq, r.chain) == (i, c)


def test_a_second_writer_is_refused(tmp_path: Path, open_wal) -> None:
    """Two agents on one WAL would delete segments the other still reads."""
    from kubetrail.errors import UnavailableError

    open_wal(tmp_path, 1 << 20)
    with pytest.raises(UnavailableError, match="in use"):
        Wal(str(tmp_path), 1 << 20)
