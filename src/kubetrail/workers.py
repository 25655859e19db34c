"""Preparation in worker processes: raw line chunks in, MessagePack records out, one writer.

The pipeline's per-event work before the store — decode and type-check a line, redact, extract
the indexed fields, key it, hash the body and build the row's v2 entry and leaf hash — needs
nothing but the event itself, so it runs in ``N`` worker processes::

    plain file ── byte ranges, read by each worker ──► worker 1..N: decode, to_record, rows.row_head
    stdin, .gz ── the writer cuts chunks of lines ──►        │ MessagePack (records, positions, rejects)
    writer (main) ◄── in input order ────────────────────────┘
        └─► Pipeline: store.append (leaf indexes, one transaction) ─► consumers

What crosses a process boundary is bytes: a chunk of the input (not even that for a plain file:
the writer names chunk ``k`` and the worker reads it, ``prepare_range``), and ``PreparedChunk``
encoded with msgspec (a record is ~5 µs to encode and decode), both through a shared-memory slot
when the workers are forked (``chunk_slots``: one copy each way instead of the pipe's pickling and
64 KiB pieces). Parsed events never cross it: pickling one costs far more than parsing it again
where it is needed.

The results are the single process's: chunks are cut only in front of a line that starts a JSON
value (a YAML block always ends there), positions get the lines before their chunk added by the
writer, the writer takes results in input order (leaf order is the input order), and the run of
rejects that gives up on an input is counted across chunks. An input that is one pretty-printed
JSON document, or that has no JSON line to cut at for ``MAX_CHUNK_BYTES``, is read by the writer
itself from there on (``sources/files.py``, as without workers); so is what a plain file holds
after the last newline it had when opened (a line being written, what was appended since).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import multiprocessing
import os
import re
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, BinaryIO

import msgspec

from kubetrail import chunk_slots
from kubetrail.alerts.config import DetectSettings
from kubetrail.detect.engine import MATCHES, Match, RuleSet
from kubetrail.detect.stateful import EVENT_FACTS
from kubetrail.record import Decoded, Record, Rejected, SourceRef
from kubetrail.runtime import tune_gc
from kubetrail.sources import files
from kubetrail.stages.extract import to_record
from kubetrail.stages.redaction_key import RedactionKey
from kubetrail.store.codec import FRAME, dictionary_compressor
from kubetrail.store.rows import row_head

CHUNK_BYTES = 1 << 20  # input handed to a worker at once (~350 RequestResponse events)
MAX_CHUNK_BYTES = files.MAX_LINE_BYTES + (1 << 20)  # beyond this without a cut, the writer reads on
MIN_INPUT_BYTES = 16 << 20  # below this ``--workers`` defaults to 0: starting them takes ~0.5 s
IN_FLIGHT_PER_WORKER = 3  # chunks queued or being prepared per worker: bounded memory, no idle worker
# ... and at least this many in all: the writer takes a batch (pipeline.DEFAULT_BATCH, 2,000 events,
# ~6 chunks of RequestResponse events) and stores and consumes it before it asks for more, so fewer
# queued chunks leave the workers idle meanwhile (--workers 1 on 2 CPUs: 8,200 -> 10,300 ev/s, idle
# CPU halved; bench/RESULTS.md, "Fifth session")
MIN_IN_FLIGHT = 6
# The workers run this much nicer than the writer. The writer is the one serial stage (store, trail,
# consumers); with N workers on N CPUs the scheduler would give it only N/(N+1) of a CPU whenever the
# workers are busy, so it fell behind while they filled their queues and then waited: on 2 CPUs a
# fifth of the machine was idle. Nicer workers take what the writer leaves (bench/RESULTS.md,
# "Fifth session"). Niceness compares tasks within one scheduling group, so in a container or a
# session of its own this ranks kubetrail's processes among themselves.
WORKER_NICE = 19
# How long a writer that stops reading waits for the chunks workers are still preparing (one takes ~30 ms).
ABANDON_WAIT_S = 30.0


class PreparedChunk(msgspec.Struct, array_like=True):
    """What a worker returns for one chunk: the records (each with its position and row head) and
    the rejects, and ``order`` (b"r"/b"x" per item) saying how they interleaved in the input.

    A record's position is its line number as the worker counted it (``lines``) and what follows the
    number (``tails``: ``.items[0]`` in a list, else empty); the writer adds the lines before the
    chunk, which a worker reading a byte range of the file cannot know (``unpack(base=)``)."""

    records: list[Record]
    lines: list[int]
    tails: list[str]
    heads: list[tuple[Any, ...]]
    rejected: list[Rejected]
    order: bytes
    matches: list[list[Match] | None] = []  # per record, when the workers run the rules (``WorkerPool(rules=)``)
    frames: list[bytes] = []  # per record, its body compressed with zstd dictionary ``dict_id`` (``WorkerPool(dictionary=)``)
    facts: list[list[Any] | None] = []  # per record, with the rules: its ``detect.stateful.EVENT_FACTS`` (None: "nothing")
    dict_id: int = 0
    newlines: int = 0  # in the chunk: the next chunk's lines start this many after this one's
    end: int = 0  # byte range mode: where the chunk ended in the file (progress)
    fallback: int = -1  # byte range mode: no line to cut at for MAX_CHUNK_BYTES from this offset


class Ready(msgspec.Struct):
    """A record prepared by a worker, with the input position it came from (for its reject, should
    the store refuse it)."""

    record: Record
    position: str


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(PreparedChunk)
_state: dict[str, Any] = {}


def cpus() -> int:
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_live_workers() -> int:
    """``workers`` left unset for ``run``: with more than one CPU, detection and credentials run in a
    process of their own (the live sources prepare their own events; only ``ingest`` feeds the
    preparation workers), so the number only says "apart" (> 0) or not (0)."""
    n = cpus()
    return n if n > 1 else 0


def default_workers(input_bytes: int) -> int:
    """Workers for ``--workers`` left unset: one per CPU this process may use (the writer shares them:
    it waits while the workers prepare); none (the single-process pipeline) on a single CPU, or for
    less than ``MIN_INPUT_BYTES`` of input (files; stdin's size is unknown: 0), which one process
    reads before workers would have started."""
    n = cpus()
    return 0 if n <= 1 or input_bytes < MIN_INPUT_BYTES else n


ORPHAN_CHECK_S = 1.0  # how often a worker looks whether its parent is still there


def _exit_when_orphaned(parent: int) -> None:
    """A worker waits on its pool's queue and would wait there for ever once the writer is gone: a
    SIGKILLed (OOM-killed) agent or ``run`` left its workers behind, ~37 MiB each, every restart more.
    So each worker leaves as soon as it has been reparented."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_S)
    os._exit(1)


def _init(key: RedactionKey, rules: DetectSettings | None = None, ruleset: RuleSet | None = None) -> None:
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), name="kubetrail-orphan-check",
                     daemon=True).start()
    with contextlib.suppress(OSError):  # not allowed here: the same results, only slower on a full machine
        os.nice(WORKER_NICE)
    _state["key"] = key
    _state["facts"] = EVENT_FACTS if rules is not None and rules.stateful.enabled else ()
    if ruleset is not None:  # forked from the writer: its own compiled rules, as they are
        _state["rules"] = ruleset
    elif rules is not None:
        from kubetrail.detect.consumer import build_ruleset

        # Built from the settings the writer's DetectConsumer has already built its rules from (it
        # reports their errors); should it fail here anyway, records carry no matches and the
        # consumer evaluates them itself, as after a failure in ``_matches``.
        with contextlib.suppress(Exception):
            _state["rules"] = build_ruleset(rules)
    tune_gc()


def prepare(chunk: bytes | int, first_line: int, source: SourceRef, dictionary: tuple[int, bytes] | None = None,
            slot: int | None = None) -> bytes | int:
    """A worker's task: every item of ``chunk`` (whole lines from ``first_line``; an int: the length of
    the chunk the writer put in ``slot``), the result sent back through ``slot`` when there is one."""
    if isinstance(chunk, int):
        assert slot is not None, "a chunk in a slot, without one"
        chunk = chunk_slots.get(slot, chunk)
    return chunk_slots.send(_encoder.encode(_prepare(chunk, first_line, source, dictionary)), slot)


def _prepare(chunk: bytes, first_line: int, source: SourceRef, dictionary: tuple[int, bytes] | None) -> PreparedChunk:
    """Positions leave out the input's name (``:12``, ``:12.items[0]``): ``unpack`` puts it in front,
    since a file name need not be UTF-8, which MessagePack strings are. With the store's zstd
    ``dictionary`` the bodies are compressed here too (the writer takes the frames, store/codec.py)."""
    key: RedactionKey = _state["key"]
    rules: RuleSet | None = _state.get("rules")
    compress = _compressor(dictionary) if dictionary is not None else None
    lines = files._Lines(io.BytesIO(chunk))
    lines.number = first_line
    out = PreparedChunk([], [], [], [], [], b"", dict_id=dictionary[0] if dictionary is not None else 0)
    order = bytearray()
    for item in files._read_lines(lines, "", lines.next(files.MAX_LINE_BYTES)):
        if isinstance(item, Decoded):
            try:
                record = to_record(item, source, key)
                head = row_head(record)
            except Exception as exc:  # noqa: BLE001 - as pipeline._record_or_reject: one bad event never fails a chunk
                item = Rejected(item.position, f"cannot be stored ({type(exc).__name__})")
            else:
                out.records.append(record)
                number, tail = _split_position(item.position)
                out.lines.append(number)
                out.tails.append(tail)
                out.heads.append(head)
                if rules is not None:
                    out.matches.append(_matches(rules, record))
                    out.facts.append(_event_facts(record))
                if compress is not None:
                    out.frames.append(compress(record.body))
                record.__dict__.pop("_event", None)  # never crosses: the chunk need not keep it (memory, GC)
                order += b"r"
                continue
        out.rejected.append(item)
        order += b"x"
    out.order = bytes(order)
    newlines = lines.newlines_read(first_line)
    out.newlines = chunk.count(b"\n") if newlines is None else newlines
    return out


def _compressor(dictionary: tuple[int, bytes]) -> Callable[[bytes], bytes]:
    """The store's compressor for ``dictionary``, made once per worker."""
    cached = _state.get("compressor")
    if cached is None or cached[0] != dictionary[0]:
        cached = _state["compressor"] = (dictionary[0], dictionary_compressor(*dictionary).compress)
    return cached[1]  # type: ignore[no-any-return]


_POSITION = re.compile(r":(\d+)")


def _split_position(position: str) -> tuple[int, str]:
    """``:12.items[0]`` -> (12, ``.items[0]``): every position of a nameless input starts ``:<line>``.
    The common one, a line's ``:12``, without the regular expression (per record); ``isdecimal`` is
    what ``\\d`` matches and ``int`` reads."""
    digits = position[1:]
    if position[:1] == ":" and digits.isdecimal():
        return int(digits), ""
    m = _POSITION.match(position)
    if m is None:  # not a line position (none is made so today): kept whole
        return -1, position
    return int(m[1]), position[m.end():]


def _absolute(position: str, name: str, base: int) -> str:
    number, tail = _split_position(position)
    return name + position if number < 0 or not base else f"{name}:{base + number}{tail}"


def _rebase(r: Rejected, name: str, base: int) -> Rejected:
    """A worker's reject with the input's name and the lines before its chunk; a YAML error's reason
    names its line too (``files._yaml_reject``: the position's), which gets them as well."""
    number, _ = _split_position(r.position)
    r.position = _absolute(r.position, name, base)
    if base and number >= 0 and " at line " in r.reason:
        r.reason = r.reason.replace(f" at line {number},", f" at line {base + number},", 1)
    return r


def prepare_range(handle: tuple[str, int, int, int, int], k: int, size: int, source: SourceRef,
                  span: tuple[int, int] = (CHUNK_BYTES, MAX_CHUNK_BYTES),
                  dictionary: tuple[int, bytes] | None = None, slot: int | None = None) -> bytes | int:
    """A worker's task in byte range mode: chunk ``k`` of the file (its first ``size`` bytes, which
    end a line), read here rather than passed through the writer. Every worker finds the same cut
    points: with ``span`` = (chunk bytes, most bytes without a cut), chunk ``k`` runs from the first
    cut at or after ``k * chunk bytes`` to the first at or after ``(k + 1) * chunk bytes``; lines are
    numbered from 1 and the writer adds those before. The result goes back through ``slot`` when
    there is one."""
    fd = _open(handle)
    start, end = _bounds(fd, k, size, span)
    if end < 0:
        return chunk_slots.send(_encoder.encode(PreparedChunk([], [], [], [], [], b"", fallback=start)), slot)
    out = _prepare(_read_range(fd, start, end), 1, source, dictionary)
    out.end = end
    return chunk_slots.send(_encoder.encode(out), slot)


def _bounds(fd: int, k: int, size: int, span: tuple[int, int]) -> tuple[int, int]:
    """Chunk ``k``'s (start, end) offsets; (offset, -1) when there is no line to cut at for the most
    bytes a chunk may have: the writer reads on from ``offset`` itself."""
    step, most = span
    lo = k * step
    start = 0 if k == 0 else _cut_at(fd, lo, size, lo + most)
    end = _cut_at(fd, lo + step, size, start + most) if start >= 0 else -1
    return (max(start, lo), -1) if start < 0 or end < 0 else (start, end)


def _read_range(fd: int, start: int, end: int) -> bytes:
    data = os.pread(fd, end - start, start)
    if len(data) != end - start:
        raise OSError(f"the file shrank while it was read (at byte {start + len(data)})")
    return data


def _open(handle: tuple[str, int, int, int, int]) -> int:
    """The input file, opened once per worker: through the writer's descriptor where /proc has it (a
    file renamed or replaced since is still the one the writer opened), checked by device and inode."""
    cached = _state.get("file")
    if cached is not None and cached[0] == handle:
        return int(cached[1])
    if cached is not None:
        os.close(cached[1])
        del _state["file"]
    path, pid, fd_number, dev, ino = handle
    try:
        fd = os.open(f"/proc/{pid}/fd/{fd_number}", os.O_RDONLY)
    except OSError:
        fd = os.open(path, os.O_RDONLY)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (dev, ino):
        os.close(fd)
        raise OSError(f"{path}: the file was replaced while it was read")
    _state["file"] = (handle, fd)
    return fd


_CUT = re.compile(rb"\n[\[{]")
_WINDOW = 64 << 10


def _cut_at(fd: int, at: int, size: int, limit: int) -> int:
    """The first cut point at or after ``at`` — the start of a line that starts ``{`` or ``[`` — or
    ``size`` when there is none before it; -1 when there is none before ``limit`` either."""
    if at >= size:
        return size
    pos = at - 1  # the newline in front of a line starting at ``at``
    while pos < size:
        if pos >= limit:
            return -1
        buf = os.pread(fd, min(_WINDOW, size - pos), pos)
        m = _CUT.search(buf)
        if m is not None:
            cut = pos + m.start() + 1
            return cut if cut <= limit else -1
        if len(buf) < 2:
            break
        pos += len(buf) - 1  # the last byte again: a newline there may be a cut's
    return size


def _matches(rules: RuleSet, record: Record) -> list[Match] | None:
    """The rule matches, evaluated here where the event is parsed and hot (the writer would parse the
    body again: ~13 µs of a 2.9 KB event in the process that sets the pace). None when evaluating
    failed: the consumer then evaluates the record itself and meets the failure where one process
    would — a failure here must never cost the event its place in the store."""
    if record.kind != "audit":
        return []
    try:
        return rules.evaluate(record)
    except Exception:  # noqa: BLE001 - see above
        return None


def _event_facts(record: Record) -> list[Any] | None:
    """What the stateful detectors' ``note`` keeps from the parsed event (``EVENT_FACTS``), found here
    where the event is parsed: the writer has only the body, and parsed it again for a service-account
    request's token claims (15 % of the RR bench file's records carry one) and a pod's or node's addresses.
    Each value None when it is the shared "nothing" (most records); the whole None when not found
    (not an audit record, stateful detection off, or a failure: the writer's ``note`` finds it then,
    as one process would)."""
    wanted = _state.get("facts")
    if not wanted or record.kind != "audit":
        return None
    try:
        return [None if (value := find(record)) is none else value for _, find, none in wanted]
    except Exception:  # noqa: BLE001 - as _matches: the writer meets the failure where one process would
        return None


# A record's facts as a worker sends them when none was found (``_event_facts``), and what ``unpack`` sets then.
_NOTHING_FOUND = [None] * len(EVENT_FACTS)
_NOTHING = {key: none for key, _, none in EVENT_FACTS}


def unpack(data: bytes | PreparedChunk, name: str, base: int = 0) -> Iterator[Ready | Rejected]:
    """A worker's result as the items of input ``name``, in order; each record keeps its row head.
    ``base``: the lines of the input before the chunk that the worker did not count."""
    chunk = _decoder.decode(data) if isinstance(data, bytes) else data
    records = iter(zip(chunk.records, chunk.lines, chunk.tails, chunk.heads, strict=True))
    rejected = iter(chunk.rejected)
    detected = iter(chunk.matches) if chunk.matches else None
    frames = iter(chunk.frames) if chunk.frames else None
    facts = iter(chunk.facts) if chunk.facts else None
    dict_id = chunk.dict_id
    head_name = name + ":"
    source: SourceRef | None = None
    for kind in chunk.order:
        if kind == 0x72:  # b"r"
            record, number, tail, head = next(records)
            # One SourceRef for the chunk's records, as a source gives its records in the one process (each
            # decoded its own equal copy): what is asked of it per record (the label, for telemetry and
            # for audit silence, which labels a source again only when it is another object) is asked once.
            if record.source is not source:
                if record.source == source:
                    record.source = source  # type: ignore[assignment]
                else:
                    source = record.source
            cached = record.__dict__
            cached["_row_head"] = head  # a tuple, as msgspec decodes ``heads`` (the store adds to it)
            if detected is not None:
                matches = next(detected)
                if matches is not None:
                    cached[MATCHES] = matches  # detect.consumer takes them for the rules
            if frames is not None:
                cached[FRAME] = (dict_id, next(frames))  # the store's codec takes it
            if facts is not None:
                found = next(facts)
                if found == _NOTHING_FOUND:  # most records: every fact the shared "nothing", set at once
                    cached.update(_NOTHING)
                elif found is not None:  # kept by the detectors' ``note`` (detect.stateful.EVENT_FACTS)
                    for (key, _, none), value in zip(EVENT_FACTS, found, strict=True):
                        cached[key] = none if value is None else value
            yield Ready(record, f"{head_name}{base + number}{tail}" if number >= 0 else name + tail)
        else:
            yield _rebase(next(rejected), name, base)


def _may_fork() -> bool:
    """Fork the workers from the writer when it runs no other thread (the commit thread starts per
    batch, later; a thread holding a lock at the fork would leave it held in the child). A forked
    worker starts in milliseconds with the writer's imports and compiled rules (``ruleset``) where
    a fresh interpreter takes ~0.3 s of CPU each; else forkserver."""
    import threading

    return threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()


class WorkerPool:
    """``n`` preparation processes, forked from the writer (``_may_fork``) or from a forkserver.

    With ``rules`` (the detection settings of the writer's own detection consumer) the workers also
    evaluate the rules on each event while it is parsed; each match rides with its record and the
    consumer takes it instead of evaluating (``DetectConsumer._rules``). Forked workers use the
    consumer's own ``ruleset``; others build one from the same settings, so the matches are the ones
    the consumer would find. ``dictionary`` (the store's ``body_dictionary``, asked at every chunk)
    lets them compress the bodies as the store would; the store uses a frame only if it still
    compresses with that dictionary. Forked workers share ``slots`` with the writer, one per chunk in
    flight, for the chunks and results (``chunk_slots``; made before the fork, which happens at the
    first task).
    ``start`` starts the processes at once; else they start with the first chunk."""

    def __init__(self, n: int, key: RedactionKey, rules: DetectSettings | None = None,
                 dictionary: Callable[[], tuple[int, bytes] | None] = lambda: None,
                 ruleset: RuleSet | None = None) -> None:
        self.n = n
        self.dictionary = dictionary
        self._warm: list[Future[int]] = []
        self.method = "fork" if _may_fork() else "forkserver"
        self._slots = chunk_slots.Slots.make(self._in_flight()) if self.method == "fork" else None
        initargs = (key, rules, ruleset if self.method == "fork" else None)
        self._pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context(self.method),
                                         initializer=_init, initargs=initargs)

    def start(self) -> WorkerPool:
        """Start the processes now rather than at the first chunk; until one has started (a fresh
        interpreter from the forkserver takes ~0.3 s) the writer reads the chunks itself (``_starting``)."""
        self._warm = [self._pool.submit(os.getpid) for _ in range(self.n)]
        return self

    def _starting(self) -> bool:
        """No worker has started yet (``start`` was called and no warm-up task is done): the writer,
        idle otherwise, reads the next chunk itself, as without workers (the same items)."""
        return bool(self._warm) and not any(f.done() for f in self._warm)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._slots is not None:
            self._slots.close()
            self._slots = None

    def _in_flight(self) -> int:
        """Chunks submitted and not yet taken, at most."""
        return max(self.n * IN_FLIGHT_PER_WORKER, MIN_IN_FLIGHT)

    def _submit(self, task: Callable[..., bytes | int], *args: Any, chunk: bytes | None = None) -> _Pending:
        """``task(*args)`` (``prepare``'s chunk first when given), with a slot for its result if the
        pool has one free; the writer puts ``chunk`` there for the worker to read."""
        slot = self._slots.take() if self._slots is not None and self._slots.free else None
        if chunk is not None:
            head: bytes | int = chunk
            if slot is not None:
                try:
                    chunk_slots.put(slot, chunk)
                    head = len(chunk)
                except OSError:  # no memory for it: the chunk goes through the pipe, the result still here
                    pass
            args = (head, *args)
        return _Pending(self._pool.submit(task, *args, slot=slot), slot)

    def _take(self, pending: _Pending) -> bytes:
        """The result of the oldest chunk in flight; its slot is free again once it is read."""
        try:
            return chunk_slots.receive(pending.future.result(), pending.slot)
        finally:
            self._release(pending)

    def _release(self, pending: _Pending) -> None:
        if pending.slot is not None and self._slots is not None:
            self._slots.give_back(pending.slot)
            pending.slot = None

    def _abandon(self, pending: deque[_Pending]) -> None:
        """Chunks in flight whose results are not wanted (an error or a consumer that stopped early):
        cancelled, or waited for if a worker has one already (it may still write to the slot, which must
        not be handed out again before). A chunk not done within ``ABANDON_WAIT_S`` (for all of them
        together) keeps its slot for good: the pool goes on with one slot fewer (the pipe when none is
        left) rather than hang here."""
        deadline = time.monotonic() + ABANDON_WAIT_S
        for p in pending:
            if not p.future.cancel():
                try:
                    p.future.result(timeout=max(deadline - time.monotonic(), 0.0))
                except TimeoutError:
                    p.slot = None
                except Exception:  # noqa: BLE001 - its result is not wanted, nor its failure
                    pass
            self._release(p)
        pending.clear()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def input_items(self, inp: files.Input, source: SourceRef) -> Iterator[Ready | Rejected | Decoded]:
        """``files.Input.items`` through the workers (a read error keeps what was read, as there)."""
        try:
            if inp.stream is inp.raw and _regular(inp):
                yield from files._bounded(self._ranges(inp, source), inp.path)
            else:
                yield from self.items(inp.stream, inp.path, source)
        except (OSError, EOFError) as exc:
            yield Rejected(inp.path, f"read error: {'bad gzip data' if isinstance(exc, gzip.BadGzipFile) else exc}")

    def items(self, stream: BinaryIO, name: str, source: SourceRef) -> Iterator[Ready | Rejected | Decoded]:
        """Every item of one input (``files.read_stream``'s, in the same order, positions and rejects)."""
        return files._bounded(self._items(stream, name, source), name)

    def _items(self, stream: BinaryIO, name: str, source: SourceRef) -> Iterator[Ready | Rejected | Decoded]:
        reader = _Chunker(stream)
        if _document(reader.first_line()):
            yield from files.read_stream(reader.rest_stream(), name)  # one pretty-printed document
            return
        pending: deque[_Pending] = deque()
        limit = self._in_flight()
        chunks = reader.chunks()
        try:
            for chunk, first_line in chunks:
                if not pending and self._starting():
                    yield from _read_on(io.BytesIO(chunk), name, first_line)
                    continue
                pending.append(self._submit(prepare, first_line, source, self.dictionary(), chunk=chunk))
                while len(pending) >= limit:
                    yield from unpack(self._take(pending.popleft()), name)
            while pending:
                yield from unpack(self._take(pending.popleft()), name)
        finally:
            self._abandon(pending)
        if reader.fallback:  # no line to cut at for MAX_CHUNK_BYTES: read on here, as without workers
            yield from _read_on(reader.rest_stream(), name, reader.number)

    def _ranges(self, inp: files.Input, source: SourceRef) -> Iterator[Ready | Rejected | Decoded]:
        """A plain file: the workers read their chunks themselves (``prepare_range``); the writer only
        decides the chunks' count and puts the results in order. Lines after the last newline at the
        start (a line being written) and whatever was appended since are read on here."""
        raw, name = inp.raw, inp.path
        reader = _Chunker(raw)
        if _document(reader.first_line()):
            yield from files.read_stream(reader.rest_stream(), name)  # one pretty-printed document
            return
        fd = raw.fileno()
        st = os.fstat(fd)
        size = _lines_end(fd, st.st_size)
        handle = (name, os.getpid(), fd, st.st_dev, st.st_ino)  # what ``_open`` in a worker opens
        span = (CHUNK_BYTES, MAX_CHUNK_BYTES)  # the writer's: the workers' module globals may differ (tests)
        count = -(-size // CHUNK_BYTES)
        pending: deque[_Pending] = deque()
        limit = self._in_flight()
        base, resume, k = 0, size, 0
        try:
            while k < count or pending:
                if not pending and self._starting():
                    start, end = _bounds(fd, k, size, span)
                    if end < 0:
                        resume = start
                        break
                    data = _read_range(fd, start, end)
                    yield from _read_on(io.BytesIO(data), name, base + 1)
                    base += data.count(b"\n")
                    inp.at, k = end, k + 1
                    continue
                while k < count and len(pending) < limit:
                    pending.append(self._submit(prepare_range, handle, k, size, source, span, self.dictionary()))
                    k += 1
                chunk = _decoder.decode(self._take(pending.popleft()))
                if chunk.fallback >= 0:  # no line to cut at for MAX_CHUNK_BYTES: read on here
                    resume = chunk.fallback
                    break
                yield from unpack(chunk, name, base)
                base += chunk.newlines
                inp.at = chunk.end
        finally:
            self._abandon(pending)
        inp.at = None
        raw.seek(resume)
        yield from _read_on(raw, name, base + 1)


class _Pending:
    """A chunk in flight: its task and the slot its result comes back in (None: through the pipe)."""

    __slots__ = ("future", "slot")

    def __init__(self, future: Future[bytes | int], slot: int | None) -> None:
        self.future = future
        self.slot = slot


def _document(first: bytes | None) -> bool:
    """The input starts with a pretty-printed JSON document (read whole, never cut into chunks)."""
    if first is None:
        return False
    head = files._unbom(first).strip()
    return head[:1] in (b"{", b"[") and not files._is_whole_json(head)


def _read_on(stream: BinaryIO, name: str, number: int) -> Iterator[Ready | Rejected | Decoded]:
    """The rest of ``stream`` read here (as without workers), its first line being line ``number``."""
    lines = files._Lines(stream)
    lines.number = number
    yield from files._read_lines(lines, name, lines.next(files.MAX_LINE_BYTES))


def _lines_end(fd: int, size: int) -> int:
    """The end of the file's last whole line (after its last newline) within ``size`` bytes."""
    pos = size
    while pos > 0:
        start = max(pos - _WINDOW, 0)
        nl = os.pread(fd, pos - start, start).rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
        pos = start
    return 0


def _regular(inp: files.Input) -> bool:
    """A plain file the workers can read at offsets (not stdin, a pipe or a compressed file)."""
    try:
        return inp.path != "-" and stat.S_ISREG(os.fstat(inp.raw.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


class _Chunker:
    """Cuts a stream into chunks of whole lines, each cut in front of a line starting ``{`` or ``[``."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self._read = getattr(stream, "read1", stream.read)
        self.buf = b""
        self.eof = False
        self.number = 1  # line number of the start of ``buf``
        self.fallback = False

    def _more(self, n: int = CHUNK_BYTES) -> bool:
        if self.eof:
            return False
        data = self._read(n)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def first_line(self) -> bytes | None:
        """The first non-blank line (read ahead, not consumed), to tell a document from lines; None
        when there is none or it is longer than a line may be."""
        scanned = 0
        while True:
            m = files._NOT_BLANK.search(self.buf, scanned)  # blank runs are skipped in C, never copied
            if m is None:
                scanned = len(self.buf)
                if not self._more():
                    return None
                continue
            start = m.start()
            end = self.buf.find(b"\n", start)
            if end >= 0:
                return self.buf[start:end].rstrip() if end - start <= files.MAX_LINE_BYTES else None
            if len(self.buf) - start > files.MAX_LINE_BYTES:
                return None
            if not self._more():
                return self.buf[start:].rstrip()

    def rest_stream(self) -> BinaryIO:
        """What was not handed out yet, then the rest of the stream."""
        return _Joined(self.buf, self.stream)

    def chunks(self) -> Iterator[tuple[bytes, int]]:
        while True:
            while len(self.buf) < CHUNK_BYTES and self._more():
                pass
            if not self.buf:
                return
            if self.eof:
                cut = len(self.buf)
            else:
                cut = self._cut(CHUNK_BYTES)
                while cut < 0:
                    if len(self.buf) > MAX_CHUNK_BYTES or not self._more():
                        break
                    cut = self._cut(CHUNK_BYTES)
                if cut < 0:
                    if not self.eof:
                        self.fallback = True
                        return
                    cut = len(self.buf)
            chunk, self.buf = self.buf[:cut], self.buf[cut:]
            yield chunk, self.number
            self.number += chunk.count(b"\n")

    def _cut(self, at: int) -> int:
        """The end of the first line ending at or after ``at`` whose next line starts a JSON value, or -1
        (two searches in C: a run of blank lines costs no Python loop)."""
        start = max(min(at, len(self.buf)) - 1, 0)
        cuts = [i + 1 for i in (self.buf.find(b"\n{", start), self.buf.find(b"\n[", start)) if i >= 0]
        return min(cuts) if cuts else -1


class _Joined(io.RawIOBase):
    """``head`` then ``rest``: a stream for the single-process reader after a chunker read ahead."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head = head
        self.rest = rest

    def readable(self) -> bool:
        return True

    def read1(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = (self.head, b"") if n < 0 or n >= len(self.head) else (self.head[:n], self.head[n:])
            return out
        return getattr(self.rest, "read1", self.rest.read)(n)

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        if n is None or n < 0:
            return self.read1(-1) + self.rest.read()
        return self.read1(n)
