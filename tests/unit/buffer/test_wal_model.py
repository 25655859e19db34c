"""Model-based test of the WAL (STYLE.md 3.7): appends, reads, acks, releases, crashes with a torn
write, and restarts, in any order. Invariant: every record whose append returned is delivered
(at least once, in seq order), and nothing is ever invented."""

from __future__ import annotations

import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kubetrail.buffer import Wal
from kubetrail.stages.seal import Seal
from kubetrail.testing import make_records

SRC = "n/audit-file:/a.log"


def crash(wal: Wal) -> None:
    """What SIGKILL leaves: no cursor flush, no close; the lock goes with the process."""
    os.close(wal._fd)
    os.close(wal._lock_fd)


class WalMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="kt-wal-model-")
        self.wal = Wal(self.dir, 1 << 20, segment_bytes=64 << 10)
        self.seal = Seal()
        self.next = 0
        self.appended: set[str] = set()
        self.delivered: set[str] = set()
        self.in_flight: list = []
        self.keys_by_seq: dict[int, str] = {}

    @rule(n=st.integers(min_value=1, max_value=60))
    def append(self, n: int) -> None:
        recs = make_records(n, start=self.next, source=SRC, body_bytes=200)
        point = self.seal.seal(SRC, recs)
        self.wal.append(SRC, recs, {SRC: str(self.next + n)}, timeout=1.0)
        self.seal.commit(SRC, point)
        self.next += n
        for r in recs:
            self.appended.add(r.key)
            self.keys_by_seq[r.seq] = r.key

    @precondition(lambda self: not self.in_flight)
    @rule(frames=st.integers(min_value=1, max_value=8))
    def read(self, frames: int) -> None:
        self.in_flight = self.wal.read(max_frames=frames)
        seqs = [r.seq for e in self.in_flight for r in e.records]
        assert seqs == sorted(seqs)
        for e in self.in_flight:
            for r in e.records:
                assert self.keys_by_seq.get(r.seq) == r.key, "a record the WAL never had"
                self.delivered.add(r.key)

    @precondition(lambda self: self.in_flight)
    @rule()
    def ack(self) -> None:
        self.wal.ack(self.in_flight)
        self.in_flight = []

    @precondition(lambda self: self.in_flight)
    @rule()
    def release(self) -> None:
        for e in self.in_flight:  # not delivered after all
            for r in e.records:
                self.delivered.discard(r.key)
        self.wal.release(self.in_flight)
        self.in_flight = []

    @rule(torn=st.binary(min_size=0, max_size=300))
    def crash_and_restart(self, torn: bytes) -> None:
        crash(self.wal)
        for e in self.in_flight:  # never acknowledged: must come again
            for r in e.records:
                self.delivered.discard(r.key)
        self.in_flight = []
        active = sorted(p for p in os.listdir(self.dir) if p.endswith(".seg"))[-1]
        with open(os.path.join(self.dir, active), "ab") as fh:  # an append cut short by the kill
            fh.write(b"KTF1" + torn if torn else b"")
        self.wal = Wal(self.dir, 1 << 20, segment_bytes=64 << 10)
        self.seal = Seal(self.wal.seal_state())
        assert self.wal.position(SRC) in (None, str(self.next))

    @invariant()
    def bounded(self) -> None:
        assert self.wal.bytes() <= 1 << 20

    def teardown(self) -> None:
        try:
            if self.in_flight:
                self.wal.release(self.in_flight)
                for e in self.in_flight:
                    for r in e.records:
                        self.delivered.discard(r.key)
            while entries := self.wal.read():
                for e in entries:
                    for r in e.records:
                        assert r.kind == "audit", "a loss declared where nothing was lost"
                        self.delivered.add(r.key)
                self.wal.ack(entries)
            assert self.appended <= self.delivered, "an appended record was never delivered"
            self.wal.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


WalMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=30, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow])
test_wal_model = WalMachine.TestCase
