"""The node's disk WAL: records are durable here before a source position advances.

On-disk format, version 1 (also ``docs/specs/wal-format.md``; integers little-endian)::

    DIR/wal-<id:016d>.seg   segments, ids increasing; only the newest one is appended to
        header (32 bytes)   b"KTWALSEG" | u32 version = 1 | u32 0 | u64 segment id | u64 created_ns
        frames              back to back, the first one a StateFrame
    frame                   b"KTF1" | u32 crc32c | u32 length | u32 record count | u64 appended_ns | payload
                            crc32c (Castagnoli) covers length, count, appended_ns and the payload
    payload                 MessagePack, a tagged array (msgspec, see ``frames.py``):
        [1, source, first_seq, count, last_chain, positions, records]   BatchFrame: one append
        [2, {source: [seq, chain]}, positions]                           StateFrame: state at the segment start
        [3, reason, [[source, first, last, count, chain], …], segment]   LossFrame: a declared loss
    DIR/cursor              b"KTCUR1\\n" | u64 segment | u64 offset | u32 crc32c of the 16 bytes before:
                            the first frame not yet acknowledged (replaced atomically: temp, fsync, rename)
    DIR/quarantine/         bytes that failed their checksum, with a JSON note each; never deleted by kubetrail
    DIR/lock                flock'd while an agent has the WAL open (one writer)

Invariants:

* ``append`` returns only after ``fdatasync``: a source may advance its position when it returns, and
  the positions are *in* the frame, so records and positions are durable together.
* A segment is deleted only when every frame in it has been acknowledged by the sink (broker ack).
* Every byte on disk is either a valid frame, a torn tail (truncated at start, copied to
  quarantine), or a corrupted region (copied to quarantine, skipped, and declared as a loss with
  the seq range it can have held, bounded by the frames around it).
* ``when_full: drop_oldest`` overwrites the oldest unacknowledged frames with one LossFrame and
  truncates after it; a drop interrupted by a crash is finished at the next start (anything after a
  drop frame that is not a newer frame is stale). See ``policy.py``.
* The seal state (last seq and hash per source) and the positions are rebuilt at start from the
  StateFrame of the oldest segment and every frame after it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import threading
import time
from collections.abc import Callable

import crc32c
import msgspec

from kubetrail import telemetry
from kubetrail.buffer import recovery
from kubetrail.buffer.frames import (
    SEGMENT_HEADER,
    BatchFrame,
    LossFrame,
    LossRange,
    SealPoint,
    StateFrame,
    encode_frame,
    read_frame_at,
    scan,
    segment_header,
)
from kubetrail.buffer.policy import WhenFull, loss_records, merge_ranges
from kubetrail.errors import Pushback, SinkError, UnavailableError
from kubetrail.record import Record, decode_records, encode_records

CURSOR = struct.Struct("<7sQQI")
CURSOR_MAGIC = b"KTCUR1\n"
CURSOR_WRITE_SECS = 0.2
MIN_SEGMENT_BYTES = 64 << 10
RETRY_SECS = 0.25


class WalEntry(msgspec.Struct):
    """What ``read`` hands the sink: one frame's records (a LossFrame's are ``loss`` records)."""

    segment: int
    offset: int
    end: int
    records: list[Record]
    loss: bool = False


class WalStatus(msgspec.Struct, kw_only=True):
    dir: str
    bytes: int
    max_bytes: int
    segments: int
    records: int
    oldest_record_age_secs: float | None
    quarantined_segments: int
    quarantined_bytes: int
    dropped_records: int | None  # since this process opened the WAL (None when only inspected)
    when_full: str


class Wal:
    """One writer lock; ``append`` from source threads, ``read``/``ack``/``release`` from the sink."""

    def __init__(self, path: str, max_bytes: int, when_full: WhenFull = "block", segment_bytes: int = 0,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.dir = path
        self.max_bytes = max_bytes
        self.when_full = when_full
        self.segment_bytes = segment_bytes or max(MIN_SEGMENT_BYTES, min(64 << 20, max_bytes // 8))
        self.clock = clock
        self.dropped_records = 0
        self._cond = threading.Condition()
        self._in_flight = 0
        self._cursor_written = 0.0
        os.makedirs(path, exist_ok=True)
        self._lock_fd = _lock(path)
        try:
            found = recovery.recover(path, self._read_cursor(), clock)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.segments = found.segments  # id -> size, oldest first
        self.data_start = found.data_start  # id -> offset after the StateFrame
        self.seal: dict[str, SealPoint] = found.seal
        self.positions: dict[str, str] = found.positions
        self.unacked = found.unacked  # id -> records not yet acknowledged in that segment
        self.acked = self.read_at = found.cursor
        self.last_id = found.last_id
        if not self.segments:
            self._new_segment()
            self.acked = self.read_at = (self.active, 0)
        self._fd = os.open(self._path(self.active), os.O_RDWR)  # unbuffered: a failed write leaves nothing behind
        if found.declare:
            self._write_frame(LossFrame("corrupt", found.declare), 0)
            recovery.write_notes(path, found)
            lost = sum(r.last_seq - r.first_seq + 1 for r in found.declare)
            telemetry.emit(telemetry.BufferRecordsDropped(count=lost, reason="corrupt"))
        self._write_cursor(force=True)

    # -- state -----------------------------------------------------------------------------------
    @property
    def active(self) -> int:
        return next(reversed(self.segments))

    def bytes(self) -> int:
        return sum(self.segments.values())

    def records(self) -> int:
        return sum(self.unacked.values())

    def position(self, key: str) -> str | None:
        with self._cond:
            return self.positions.get(key)

    def seal_state(self) -> dict[str, SealPoint]:
        with self._cond:
            return dict(self.seal)

    def _path(self, seg: int) -> str:
        return os.path.join(self.dir, f"wal-{seg:016d}.seg")

    # -- writing ---------------------------------------------------------------------------------
    def append(self, source: str, records: list[Record], positions: dict[str, str],
               timeout: float | None = None) -> None:
        """Append one source's sealed records and the positions they advance to; durable on return.

        Raises ``Pushback`` if the WAL stays full (``block``) until ``timeout`` seconds passed."""
        chain = records[-1].chain if records else b""
        first = records[0].seq if records else 0
        payload = BatchFrame(source, first, len(records), chain, positions, msgspec.Raw(encode_records(records)))
        now = self.clock()
        data = encode_frame(payload, len(records), now)
        if len(data) > self.max_bytes // 4:
            raise ValueError(f"a WAL frame of {len(data)} bytes is over a quarter of max_bytes: split the batch")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self.bytes() + len(data) <= self.max_bytes and self._try_write(data):
                    break
                self._make_room(len(data), deadline)
            self.positions.update(positions)
            if records:
                self.seal[source] = SealPoint(records[-1].seq, chain)
                self.unacked[self.active] = self.unacked.get(self.active, 0) + len(records)
            if self.segments[self.active] >= self.segment_bytes:
                self._rotate()
            self._cond.notify_all()
            size = self.bytes()
        telemetry.emit(telemetry.BufferSizeMeasured(size_bytes=size))

    def _try_write(self, data: bytes) -> bool:
        """Write and fdatasync at the end of the active segment; False (nothing kept) on ENOSPC."""
        seg = self.active
        end = self.segments[seg]
        try:
            view = memoryview(data)
            at = end
            while view:
                n = os.pwrite(self._fd, view, at)
                view, at = view[n:], at + n
            os.fdatasync(self._fd)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            os.ftruncate(self._fd, end)
            return False
        self.segments[seg] = end + len(data)
        return True

    def _write_frame(self, frame: LossFrame | StateFrame, count: int) -> None:
        data = encode_frame(frame, count, self.clock())
        while not self._try_write(data):
            self._cond.wait(RETRY_SECS)

    def _make_room(self, need: int, deadline: float | None) -> None:
        """Free space by the policy, or wait; raises Pushback past the deadline (block)."""
        if self.when_full == "drop_oldest" and self._drop_oldest(need):
            return
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise Pushback(f"the WAL in {self.dir} is full ({self.bytes()} of {self.max_bytes} bytes)")
        self._cond.wait(RETRY_SECS if left is None else min(RETRY_SECS, left))

    def _rotate(self) -> None:
        try:
            self._new_segment()
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            return  # keep appending to the current segment; try again after the next append
        os.close(self._fd)
        self._fd = os.open(self._path(self.active), os.O_RDWR)

    def _new_segment(self) -> None:
        seg = max(self.active if self.segments else 0, self.last_id) + 1
        self.last_id = seg
        path = self._path(seg)
        head = segment_header(seg, self.clock())
        state = encode_frame(StateFrame(dict(self.seal), dict(self.positions)), 0, self.clock())
        try:
            with open(path, "xb") as fh:
                fh.write(head + state)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            if os.path.exists(path):
                os.unlink(path)
            raise
        _fsync_dir(self.dir)
        self.segments[seg] = len(head) + len(state)
        self.data_start[seg] = len(head) + len(state)
        self.unacked[seg] = 0

    # -- when full: drop_oldest ----------------------------------------------------------------
    def _drop_oldest(self, need: int) -> bool:
        """Replace the oldest unacknowledged frames by a LossFrame; True when something was freed."""
        while self._in_flight:  # a frame being published is not dropped: its fate decides first
            self._cond.wait(RETRY_SECS)
        for seg in list(self.segments):
            start = max(self.acked[1], self.data_start[seg]) if seg == self.acked[0] else self.data_start[seg]
            dropped, ranges = self._ranges(seg, start)
            if not dropped:
                continue
            frame = encode_frame(LossFrame("dropped", merge_ranges(ranges), seg), 0, self.clock())
            fd = os.open(self._path(seg), os.O_RDWR)
            try:  # over bytes already allocated: needs no free space
                os.pwrite(fd, frame, start)
                os.fdatasync(fd)
                os.ftruncate(fd, start + len(frame))
                os.fdatasync(fd)
            finally:
                os.close(fd)
            self.segments[seg] = start + len(frame)
            self.unacked[seg] = 0
            self.dropped_records += dropped
            telemetry.emit(telemetry.BufferRecordsDropped(count=dropped, reason="when_full"))
            if self.read_at > (seg, start):
                self.read_at = (seg, start)
            return True
        return False

    def _ranges(self, seg: int, start: int) -> tuple[int, list[LossRange]]:
        """Records in unacknowledged BatchFrames from ``start`` to the end of ``seg`` and every seq
        range to declare (earlier declarations in that span are carried over, never lost)."""
        dropped = 0
        ranges: list[LossRange] = []
        with open(self._path(seg), "rb") as fh:
            for item in scan(fh, start, self.segments[seg]):
                if isinstance(item, recovery.Bad):
                    continue
                p = item.payload
                if isinstance(p, BatchFrame) and p.count:
                    dropped += p.count
                    ranges.append(LossRange(p.source, p.first_seq, p.first_seq + p.count - 1, p.count,
                                            p.last_chain))
                elif isinstance(p, LossFrame):
                    ranges.extend(p.ranges)
        return dropped, ranges

    # -- reading (the sink's side) ---------------------------------------------------------------
    def wait(self, timeout: float) -> bool:
        """Block until there is something to read (True) or ``timeout`` passed (False)."""
        with self._cond:
            if not self._readable():
                self._cond.wait(timeout)
            return self._readable()

    def _readable(self) -> bool:
        seg, off = self.read_at
        return off < self.segments.get(seg, 0) or seg != self.active

    def read(self, max_bytes: int = 4 << 20, max_frames: int = 64) -> list[WalEntry]:
        """The next frames after the read cursor (up to the budget); they are in flight until
        ``ack`` (delivered) or ``release`` (not delivered: read again)."""
        out: list[WalEntry] = []
        size = 0
        with self._cond:
            while len(out) < max_frames and size < max_bytes:
                seg, off = self.read_at
                end = self.segments[seg]
                if off >= end:
                    if seg == self.active:
                        break
                    self.read_at = (self._next(seg), 0)
                    continue
                self.read_at = (seg, max(off, self.data_start[seg]))
                if self.read_at[1] >= end:
                    continue
                with open(self._path(seg), "rb") as fh:
                    for item in scan(fh, self.read_at[1], end):
                        self.read_at = (seg, item.end)
                        if isinstance(item, recovery.Bad) or isinstance(item.payload, StateFrame):
                            continue
                        out.append(_entry(seg, item))
                        size += item.end - item.offset
                        if len(out) >= max_frames or size >= max_bytes:
                            break
            self._in_flight += len(out)
        return out

    def _next(self, seg: int) -> int:
        ids = list(self.segments)
        return ids[ids.index(seg) + 1]

    def ack(self, entries: list[WalEntry]) -> None:
        """The sink has these frames durably (broker ack): forget them, delete finished segments."""
        if not entries:
            return
        with self._cond:
            for e in entries:
                self.unacked[e.segment] = max(0, self.unacked.get(e.segment, 0) - _count(e))
            last = entries[-1]
            self.acked = (last.segment, last.end)
            self._in_flight = max(0, self._in_flight - len(entries))
            deleted = self._trim()
            self._write_cursor(force=deleted or not self.records())  # idle: `buffer status` says 0
            self._cond.notify_all()
            size = self.bytes()
        telemetry.emit(telemetry.BufferSizeMeasured(size_bytes=size))

    def release(self, entries: list[WalEntry]) -> None:
        """These frames were not delivered: the next ``read`` starts again at the first of them."""
        with self._cond:
            self._in_flight = max(0, self._in_flight - len(entries))
            self.read_at = self.acked
            self._write_cursor(force=True)  # the sink is stuck: let `buffer status` see what it acked
            self._cond.notify_all()

    def _trim(self) -> bool:
        seg, off = self.acked
        if seg != self.active and off >= self.segments[seg]:
            self.acked = (self._next(seg), 0)
        self.read_at = max(self.read_at, self.acked)
        doomed = [s for s in self.segments if s < self.acked[0]]
        for s in doomed:
            os.unlink(self._path(s))
            for table in (self.segments, self.data_start, self.unacked):
                table.pop(s, None)
        if doomed:
            self._write_cursor(force=True)
            _fsync_dir(self.dir)
        return bool(doomed)

    # -- cursor ------------------------------------------------------------------------------------
    def _read_cursor(self) -> tuple[int, int] | None:
        return self._read_cursor_file(self.dir)

    @staticmethod
    def _read_cursor_file(path: str) -> tuple[int, int] | None:
        try:
            with open(os.path.join(path, "cursor"), "rb") as fh:
                data = fh.read(CURSOR.size + 1)
        except FileNotFoundError:
            return None
        if len(data) != CURSOR.size:
            return None
        magic, seg, off, crc = CURSOR.unpack(data)
        if magic != CURSOR_MAGIC or crc32c.crc32c(data[7:23]) != crc:
            return None
        return seg, off

    def _write_cursor(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._cursor_written < CURSOR_WRITE_SECS:
            return
        self._cursor_written = now
        body = struct.pack("<QQ", *self.acked)
        try:
            atomic_write(os.path.join(self.dir, "cursor"), CURSOR_MAGIC + body + struct.pack("<I", crc32c.crc32c(body)))
        except OSError as exc:  # a full disk: the old cursor stays, which only means redelivery
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise

    # -- status and close --------------------------------------------------------------------------
    def status(self) -> WalStatus:
        with self._cond:
            oldest = recovery.first_unacked_ns(self._path, self.segments, self.data_start, self.acked)
            q_count, q_bytes = recovery.quarantined(self.dir)
            return WalStatus(dir=self.dir, bytes=self.bytes(), max_bytes=self.max_bytes, segments=len(self.segments),
                             records=self.records(),
                             oldest_record_age_secs=None if oldest is None else max(0.0, (self.clock() - oldest) / 1e9),
                             quarantined_segments=q_count, quarantined_bytes=q_bytes,
                             dropped_records=self.dropped_records, when_full=self.when_full)

    def close(self) -> None:
        with self._cond:
            if self._fd < 0:
                return
            self._write_cursor(force=True)
            os.close(self._fd)
            self._fd = -1
            os.close(self._lock_fd)


def inspect(path: str, max_bytes: int = 0, when_full: str = "") -> WalStatus:
    """The status of a WAL directory without opening it for writing (a running agent owns it)."""
    if not os.path.isdir(path):
        raise FileNotFoundError(path)
    cursor = Wal._read_cursor_file(path)
    found = recovery.inspect(path, cursor)
    q_count, q_bytes = recovery.quarantined(path)
    now = time.time_ns()
    return WalStatus(dir=path, bytes=sum(found.segments.values()), max_bytes=max_bytes, segments=len(found.segments),
                     records=sum(found.unacked.values()),
                     oldest_record_age_secs=None if found.first_ns is None else max(0.0, (now - found.first_ns) / 1e9),
                     quarantined_segments=q_count, quarantined_bytes=q_bytes, dropped_records=None,
                     when_full=when_full)


def _entry(seg: int, frame: recovery.Frame) -> WalEntry:
    p = frame.payload
    if isinstance(p, BatchFrame):
        records = decode_records(p.records) if p.count else []
    elif isinstance(p, LossFrame):
        return WalEntry(seg, frame.offset, frame.end, loss_records(p, frame.appended_ns), loss=True)
    else:  # pragma: no cover - read() skips StateFrames
        raise SinkError("a StateFrame is not delivered")
    return WalEntry(seg, frame.offset, frame.end, records)


def _count(e: WalEntry) -> int:
    return 0 if e.loss else len(e.records)


def _lock(path: str) -> int:
    """An exclusive lock on DIR/lock for as long as the WAL is open: two writers would each
    delete what the other still needs."""
    fd = os.open(os.path.join(path, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise UnavailableError(f"the WAL in {path} is in use by another kubetrail agent") from exc
    return fd


def atomic_write(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync of the directory."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path) or ".")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["SEGMENT_HEADER", "Wal", "WalEntry", "WalStatus", "atomic_write", "inspect", "read_frame_at"]
