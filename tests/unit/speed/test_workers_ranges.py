"""Workers reading byte ranges of a plain file (``workers.prepare_range``): every chunk boundary is
found the same way by the two workers that share it, and the items, positions and rejects are the
single-process reader's — across YAML blocks, blank runs, lists, a last line without its newline, a
stretch without any line to cut at, and a file that grows while it is read."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from kubetrail import chunk_slots, workers
from kubetrail.record import Decoded, Rejected, SourceRef
from kubetrail.sources import files
from kubetrail.stages.redaction_key import load_or_create
from kubetrail.testing import make_event

SRC = SourceRef(stream="f")


def _lines(n: int) -> list[bytes]:
    return [orjson.dumps(make_event(f"e-{i}", name=f"n{i}" * (i % 7))) for i in range(n)]


def _mixed(n: int) -> bytes:
    out: list[bytes] = []
    for i, line in enumerate(_lines(n)):
        out.append(line)
        if i % 13 == 5:
            out += [b"", b"  ", b"apiVersion: audit.k8s.io/v1", b"kind: Event", b"auditID: y-%d" % i,
                    b"stage: ResponseComplete", b"verb: get", b"requestURI: /api"]
        if i % 17 == 2:
            out += [b"not json", b"[" + line + b"]", b'{"kind": "EventList", "items": [' + line + b"]}"]
    return b"\n".join(out) + b"\n"


def _expected(data: bytes, name: str) -> list[tuple[str, str]]:
    items = files.read_stream(io.BytesIO(data), name)
    return [(i.position, "r" if isinstance(i, Decoded) else "x:" + i.reason) for i in items]


READ_HERE: list[int] = []  # items the writer read itself (``Decoded``) in the last ``_through_ranges``


class Here:
    """A pool's executor running each task at once in this process."""

    def submit(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        from concurrent.futures import Future
        f: Future[bytes] = Future()
        f.set_result(fn(*args, **kwargs))
        return f


def here_pool(n: int, slots: bool = False, executor: object | None = None) -> workers.WorkerPool:
    """A ``WorkerPool`` whose tasks run in this process; with ``slots``, real shared-memory slots
    (``chunk_slots``: a task here writes its result to the slot as a forked worker does)."""
    pool = workers.WorkerPool.__new__(workers.WorkerPool)
    pool.n = n
    pool._pool = executor or Here()  # type: ignore[assignment]
    pool.dictionary = lambda: None
    pool._warm = []
    pool._slots = chunk_slots.Slots.make(pool._in_flight()) if slots else None
    return pool


def _through_ranges(path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, most: int | None = None,
                    slots: bool = False) -> list[tuple[str, str]]:
    """The items of ``path`` from ``WorkerPool._ranges``, the workers' task run in this process."""
    READ_HERE[:] = [0]
    monkeypatch.setattr(workers, "CHUNK_BYTES", chunk)
    if most is not None:
        monkeypatch.setattr(workers, "MAX_CHUNK_BYTES", most)
    pool = here_pool(2, slots)
    inp = files.Input(str(path))
    try:
        out = []
        for i in files._bounded(pool._ranges(inp, SRC), inp.path):
            out.append((i.position, "x:" + i.reason if isinstance(i, Rejected) else "r"))
            READ_HERE[0] += isinstance(i, Decoded)
        return out
    finally:
        inp.close()
        workers._state.pop("file", None)
        if pool._slots is not None:
            assert len(pool._slots.free) == len(pool._slots.fds)  # every slot handed back
            pool._slots.close()


@pytest.fixture(autouse=True)
def _key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "_state", {"key": load_or_create(str(tmp_path / "k"))})


@pytest.mark.parametrize("slots", [False, True])
@pytest.mark.parametrize("chunk", [1, 7, 333, 4096, 1 << 20])
def test_byte_ranges_give_the_single_process_items(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   chunk: int, slots: bool) -> None:
    data = _mixed(120)
    path = tmp_path / "a.log"
    path.write_bytes(data)
    want = _expected(data, str(path))
    assert sum(1 for _, k in want if k == "r") > 120 and sum(1 for _, k in want if k != "r") > 5
    assert _through_ranges(path, monkeypatch, chunk, slots=slots) == want
    assert READ_HERE[0] == 0  # every item came from a worker's range

def test_a_last_line_without_newline_and_blank_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _lines(30)
    data = b"\n\n\n" + b"\n\n".join(lines[:-1]) + b"\n" * 50 + lines[-1]  # no newline at the end
    path = tmp_path / "a.log"
    path.write_bytes(data)
    got = _through_ranges(path, monkeypatch, 500)
    assert got == _expected(data, str(path)) and len(got) == 30 and got[-1][0] == f"{path}:{3 + 2 * 28 + 50 + 1}"


def test_a_stretch_without_a_cut_is_read_on_by_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A YAML stream longer than a chunk may be without a line to cut at: from that chunk on, the
    writer reads the file itself, as the single process does."""
    head = b"\n".join(_lines(40)) + b"\n"
    yaml = b"".join(b"apiVersion: audit.k8s.io/v1\nkind: Event\nauditID: y-%d\nverb: get\n---\n" % i
                    for i in range(400))
    data = head + yaml + b"\n".join(_lines(10)) + b"\n"
    path = tmp_path / "a.log"
    path.write_bytes(data)
    got = _through_ranges(path, monkeypatch, 2048, most=4096)
    assert got == _expected(data, str(path)) and len(got) > 400
    assert 400 < READ_HERE[0] < len(got) - 20  # the workers read the head, the writer the rest


def test_lines_appended_while_read_are_read_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunks cover the file as it was when opened, to its last newline; the writer reads on
    from there, so a line being written at that moment is read whole, and so is what follows."""
    lines = _lines(20)
    path = tmp_path / "a.log"
    path.write_bytes(b"\n".join(lines[:10]) + b"\n" + lines[10][:50])  # a line half written
    monkeypatch.setattr(workers, "CHUNK_BYTES", 1000)
    pool = here_pool(1)
    inp = files.Input(str(path))
    items = pool._ranges(inp, SRC)
    first = next(items)
    assert 0 < inp.tell() <= path.stat().st_size  # progress: where the workers' chunks have reached
    with open(path, "ab") as fh:  # the writer of the log goes on
        fh.write(lines[10][50:] + b"\n" + b"\n".join(lines[11:]) + b"\n")
    rest = list(items)
    inp.close()
    assert [i.position for i in [first, *rest]] == [f"{path}:{n}" for n in range(1, 21)]
    assert not any(isinstance(i, Rejected) for i in [first, *rest])


def test_cut_points_are_found_across_read_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "_WINDOW", 8)
    path = tmp_path / "c"
    data = b"x" * 30 + b"\n" + b"y" * 7 + b"\n{" + b"z" * 20 + b"\n[" + b"\n"
    path.write_bytes(data)
    import os

    fd = os.open(path, os.O_RDONLY)
    try:
        first = data.index(b"\n{") + 1
        assert workers._cut_at(fd, 1, len(data), 1000) == first
        assert workers._cut_at(fd, first, len(data), 1000) == first
        assert workers._cut_at(fd, first + 1, len(data), 1000) == data.index(b"\n[") + 1
        assert workers._cut_at(fd, first + 1, len(data), first + 2) == -1  # none within the limit
        assert workers._cut_at(fd, len(data) - 1, len(data), 1000) == len(data)
        assert workers._lines_end(fd, len(data)) == len(data)
        assert workers._lines_end(fd, len(data) - 1) == len(data) - 2
    finally:
        os.close(fd)


def test_a_replaced_file_is_a_read_error_not_another_file(tmp_path: Path) -> None:
    import os

    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"{}\n")
    b.write_bytes(b"{}\n")
    st = os.stat(b)
    handle = (str(a), 0, 10**6, st.st_dev, st.st_ino)  # no such descriptor: the path, whose inode differs
    with pytest.raises(OSError, match="replaced"):
        workers._open(handle)


def test_positions_of_lists_and_rejects_get_the_lines_before_the_chunk() -> None:
    r = Rejected(":3.items[1]", "bad")
    assert workers._absolute(r.position, "f", 10) == "f:13.items[1]"
    assert workers._absolute(":3", "f", 0) == "f:3"
    assert workers._absolute("odd", "f", 10) == "fodd"
    assert workers._split_position(":12.items[0]") == (12, ".items[0]")


def test_the_workers_are_nicer_than_the_writer(tmp_path: Path) -> None:
    """The writer is the serial stage: the scheduler must not split its CPU with the workers."""
    import os

    with workers.WorkerPool(1, load_or_create(str(tmp_path / "k2"))) as pool:
        theirs = pool._pool.submit(os.nice, 0).result()
    assert theirs == min(os.nice(0) + workers.WORKER_NICE, 19)


def test_workers_compress_with_the_store_s_dictionary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the store's dictionary, a worker's frames are the store's (and ride with their records)."""
    from kubetrail.store import codec
    from kubetrail.store.codec import FRAME, dictionary_compressor
    from kubetrail.store.sqlite import Store

    monkeypatch.setattr(codec, "TRAIN_AFTER", 100)
    s = Store.open(str(tmp_path / "d"))
    data = b"\n".join(_lines(150)) + b"\n"
    s.append([i.record for i in workers.unpack(workers.prepare(data, 1, SRC), "f")])  # trains
    dictionary = s.body_dictionary()
    assert dictionary is not None
    ready = list(workers.unpack(workers.prepare(data, 1, SRC, dictionary), "f"))
    s.close()
    compress = dictionary_compressor(*dictionary).compress
    assert len(ready) == 150
    assert all(r.record.__dict__[FRAME] == (dictionary[0], compress(r.record.body)) for r in ready)  # type: ignore[union-attr]
    none = list(workers.unpack(workers.prepare(data, 1, SRC), "f"))
    assert all(FRAME not in r.record.__dict__ for r in none)  # type: ignore[union-attr]


def test_a_single_worker_has_a_batch_of_chunks_queued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer consumes a batch before it asks for more: one worker still gets MIN_IN_FLIGHT chunks."""
    from concurrent.futures import Future

    monkeypatch.setattr(workers, "CHUNK_BYTES", 500)
    path = tmp_path / "a.log"
    path.write_bytes(b"\n".join(_lines(60)) + b"\n")
    outstanding: list[Future[bytes]] = []
    most = [0]

    class Queued:
        def submit(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
            f: Future[bytes] = Future()
            f.set_result(fn(*args, **kwargs))
            outstanding[:] = [o for o in outstanding if not getattr(o, "taken", False)] + [f]
            most[0] = max(most[0], len(outstanding))
            real = f.result

            def result(timeout: float | None = None) -> bytes:
                f.taken = True  # type: ignore[attr-defined]
                return real(timeout)

            f.result = result  # type: ignore[method-assign]
            return f

    pool = here_pool(1, executor=Queued())
    inp = files.Input(str(path))
    try:
        assert len(list(pool._ranges(inp, SRC))) == 60
    finally:
        inp.close()
        workers._state.pop("file", None)
    assert most[0] == workers.MIN_IN_FLIGHT > workers.IN_FLIGHT_PER_WORKER
