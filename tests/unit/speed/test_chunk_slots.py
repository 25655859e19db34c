"""``chunk_slots``: the shared-memory files the writer and its forked workers pass chunks and results
through. What must hold: a result reads back byte for byte (also one larger than a single ``pread``
returns), a slot keeps no more memory than its last chunk, a slot that cannot take a result sends it
through the pipe instead, a system without ``memfd_create`` gets no slots, a forked child writes what
the parent reads, and the pool hands every slot back — also when the writer stops reading early, after
waiting for a chunk a worker still holds."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import orjson
import pytest

from kubetrail import chunk_slots, workers
from kubetrail.record import SourceRef
from kubetrail.sources import files
from kubetrail.stages.redaction_key import load_or_create
from kubetrail.testing import make_event

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="memfd_create is Linux's")


@pytest.fixture
def slots() -> Iterator[chunk_slots.Slots]:
    made = chunk_slots.Slots.make(3)
    assert made is not None
    yield made
    made.close()


def test_a_result_reads_back_whole_and_the_slot_shrinks(slots: chunk_slots.Slots) -> None:
    fd = slots.take()
    big = os.urandom(3 << 20) + b"end"
    assert chunk_slots.send(big, fd) == len(big)
    assert chunk_slots.receive(len(big), fd) == big
    small = b"x" * 1000
    assert chunk_slots.send(small, fd) == 1000
    assert os.fstat(fd).st_size == 1000  # nothing of the big one kept
    assert chunk_slots.receive(1000, fd) == small
    assert chunk_slots.send(b"", fd) == 0 and chunk_slots.receive(0, fd) == b""


def test_a_short_slot_is_an_error_not_a_short_result(slots: chunk_slots.Slots) -> None:
    fd = slots.take()
    chunk_slots.put(fd, b"abc")
    with pytest.raises(OSError, match="ended at byte 3 of 10"):
        chunk_slots.get(fd, 10)


def test_without_a_slot_or_when_it_fails_the_bytes_go_through_the_pipe(slots: chunk_slots.Slots) -> None:
    assert chunk_slots.send(b"data", None) == b"data"
    assert chunk_slots.receive(b"data", None) == b"data"
    fd = slots.take()
    broken = os.dup(fd)
    os.close(broken)  # a descriptor that no longer is: writing to it fails
    assert chunk_slots.send(b"data", broken) == b"data"
    assert chunk_slots.receive(b"data", fd) == b"data"


def test_no_slots_where_the_system_has_no_memfd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "memfd_create")
    assert chunk_slots.Slots.make(4) is None


def test_slots_are_handed_out_once_until_given_back(slots: chunk_slots.Slots) -> None:
    taken = [slots.take() for _ in range(3)]
    assert len(set(taken)) == 3 and not slots.free
    slots.give_back(taken[1])
    assert slots.take() == taken[1]


def test_a_forked_child_writes_what_the_parent_reads(slots: chunk_slots.Slots) -> None:
    fd = slots.take()
    payload = orjson.dumps([make_event(f"e-{i}") for i in range(500)])
    pid = os.fork()
    if pid == 0:  # the child: as a forked worker, through the descriptor it inherited
        code = 0
        try:
            code = 0 if chunk_slots.send(payload, fd) == len(payload) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert chunk_slots.receive(len(payload), fd) == payload


class _Held:
    """An executor whose futures a worker "holds": not cancellable, done only when asked for."""

    def __init__(self) -> None:
        self.waited = 0

    def submit(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        outer = self
        f: Future[bytes | int] = Future()
        f.set_running_or_notify_cancel()  # running: ``cancel`` refuses

        def result(timeout: float | None = None) -> bytes | int:
            if not f.done():
                outer.waited += 1
                f.set_result(fn(*args, **kwargs))
            return Future.result(f, timeout)

        f.result = result  # type: ignore[method-assign]
        return f


def test_a_writer_that_stops_early_waits_for_held_chunks_and_frees_every_slot(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "_state", {"key": load_or_create(str(tmp_path / "k"))})
    monkeypatch.setattr(workers, "CHUNK_BYTES", 2000)
    path = tmp_path / "a.log"
    path.write_bytes(b"".join(orjson.dumps(make_event(f"e-{i}")) + b"\n" for i in range(300)))
    held = _Held()
    pool = workers.WorkerPool.__new__(workers.WorkerPool)
    pool.n, pool._pool, pool.dictionary, pool._warm = 2, held, lambda: None, []  # type: ignore[assignment]
    pool._slots = chunk_slots.Slots.make(pool._in_flight())
    assert pool._slots is not None
    inp = files.Input(str(path))
    try:
        items = pool._ranges(inp, SourceRef(stream="f"))
        assert next(items).record.meta.audit_id == "e-0"  # type: ignore[union-attr]
        assert len(pool._slots.free) == 1  # the first chunk's slot is back; the other chunks hold theirs
        items.close()  # the writer stops reading
        assert held.waited == pool._in_flight()  # the first, read, and the ones still held, waited for
        assert sorted(pool._slots.free) == sorted(pool._slots.fds)
    finally:
        inp.close()
        workers._state.pop("file", None)
        pool._slots.close()


class _Stuck:
    """An executor whose futures a worker holds and never finishes."""

    def submit(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        f: Future[bytes | int] = Future()
        f.set_running_or_notify_cancel()
        return f


def _stuck_pool(slots: int) -> workers.WorkerPool:
    pool = workers.WorkerPool.__new__(workers.WorkerPool)
    pool.n, pool._pool, pool.dictionary, pool._warm = 1, _Stuck(), lambda: None, []  # type: ignore[assignment]
    pool._slots = chunk_slots.Slots.make(slots)
    assert pool._slots is not None
    return pool


def _held(pool: workers.WorkerPool) -> workers._Pending:
    return pool._submit(workers.prepare, 1, SourceRef(stream="f"), None, chunk=b"{}\n")


def test_a_chunk_never_done_keeps_its_slot_and_the_writer_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer stops waiting after ``ABANDON_WAIT_S``; the slot a worker may still write to is never
    handed out again (the pool has one slot fewer; with none left, results come through the pipe)."""
    monkeypatch.setattr(workers, "ABANDON_WAIT_S", 0.05)
    pool = _stuck_pool(2)
    assert pool._slots is not None
    try:
        pending = deque([_held(pool)])
        assert len(pool._slots.free) == 1
        pool._abandon(pending)
        assert len(pool._slots.free) == 1 and not pending  # the stuck chunk's slot stays out
        assert _held(pool).slot is not None
        assert _held(pool).slot is None  # the pipe
    finally:
        pool._slots.close()


def test_the_wait_is_for_all_held_chunks_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "ABANDON_WAIT_S", 0.3)
    pool = _stuck_pool(3)
    assert pool._slots is not None
    try:
        pending = deque(_held(pool) for _ in range(3))
        t = time.monotonic()
        pool._abandon(pending)
        assert time.monotonic() - t < 0.55  # one wait of 0.3 s, not three
        assert not pool._slots.free  # every held chunk keeps its slot
    finally:
        pool._slots.close()
