"""Opening a WAL directory: rebuild state, finish interrupted drops, quarantine what is damaged.

Every segment is scanned frame by frame (CRC32C checked). What is found:

* a **torn tail** (invalid bytes up to the end of the newest segment): a write that never returned,
  so nothing in it was acknowledged to a source; copied to ``quarantine/*.torn`` and truncated;
* a **corrupted region** anywhere else (or a segment whose header is unreadable, which is moved to
  ``quarantine/`` whole): copied to ``quarantine/*.bad`` with a JSON note, skipped by readers, and
  declared as a loss: for each source, the seqs between the last frame before the region and the
  first frame (or StateFrame) after it. When no later frame bounds a source, the range is the most
  records the region's bytes could hold (``count: -1``) and the seal state moves past it, so a seq
  is never handed out twice;
* the leftovers of an **interrupted drop** (anything after a drop LossFrame of the same segment that
  is not a newer frame): truncated.

``inspect`` does the same scan read-only, for ``kubetrail buffer status`` on a live agent's WAL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

import orjson

from kubetrail.buffer.frames import (
    SEGMENT_HEADER,
    Bad,
    BatchFrame,
    Frame,
    LossFrame,
    LossRange,
    SealPoint,
    StateFrame,
    parse_segment_header,
    scan,
)

MIN_RECORD_BYTES = 64  # every encoded record holds at least its 64-hex-digit key
_SEGMENT = re.compile(r"^wal-(\d{16})\.seg$")
QUARANTINE = "quarantine"

__all__ = ["Bad", "Found", "Frame", "first_unacked_ns", "inspect", "quarantined", "recover", "write_notes"]


@dataclass
class Region:
    """A damaged span: ``before`` is the seal state just before it, ``bound`` the last seq per source
    that the frames after it prove (filled in as the scan goes on)."""

    segment: int
    offset: int
    end: int
    before: dict[str, SealPoint]
    whole: bool = False
    bound: dict[str, int] = field(default_factory=dict)
    declared: list[LossRange] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"wal-{self.segment:016d}.seg" if self.whole else f"wal-{self.segment:016d}.seg@{self.offset}"


@dataclass
class Found:
    segments: dict[int, int] = field(default_factory=dict)
    data_start: dict[int, int] = field(default_factory=dict)
    unacked: dict[int, int] = field(default_factory=dict)
    seal: dict[str, SealPoint] = field(default_factory=dict)
    positions: dict[str, str] = field(default_factory=dict)
    cursor: tuple[int, int] = (0, 0)
    last_id: int = 0
    regions: list[Region] = field(default_factory=list)
    declare: list[LossRange] = field(default_factory=list)
    torn: int = 0
    first_ns: int | None = None


def segment_ids(path: str) -> list[int]:
    return sorted(int(m.group(1)) for n in os.listdir(path) if (m := _SEGMENT.match(n)))


def recover(path: str, cursor: tuple[int, int] | None, clock: Callable[[], int], readonly: bool = False) -> Found:
    qdir = os.path.join(path, QUARANTINE)
    if not readonly:
        os.makedirs(qdir, exist_ok=True)
    found = Found()
    ids = segment_ids(path)
    found.last_id = max([*ids, *_quarantined_ids(qdir)], default=0)
    cseg, coff = cursor if cursor is not None else (ids[0] if ids else 0, 0)
    for i, seg in enumerate(ids):
        name = os.path.join(path, f"wal-{seg:016d}.seg")
        if seg < cseg:  # acknowledged; the crash came between the cursor write and the unlink
            if not readonly:
                os.unlink(name)
            continue
        try:
            _scan_segment(found, seg, name, i == len(ids) - 1, (cseg, coff), readonly)
        except FileNotFoundError:
            if not readonly:
                raise
            continue  # inspecting a live WAL: the agent deleted an acknowledged segment meanwhile
    _declare(found, qdir)
    return found


def _scan_segment(found: Found, seg: int, name: str, newest: bool, cursor: tuple[int, int], readonly: bool) -> None:
    size = os.path.getsize(name)
    with open(name, "rb") as fh:
        header = parse_segment_header(fh.read(SEGMENT_HEADER.size))
        if header is None or header[0] != seg:
            found.regions.append(Region(seg, 0, size, dict(found.seal), whole=True))
            if not readonly:
                os.replace(name, os.path.join(os.path.dirname(name), QUARANTINE, os.path.basename(name)))
            return
        start: int | None = None
        drop: LossFrame | None = None
        unacked = 0
        cut: int | None = None
        for item in scan(fh, SEGMENT_HEADER.size, size):
            if isinstance(item, Bad):
                if drop is not None:
                    cut = item.offset
                    break
                if newest and item.end == size:
                    found.torn += 1
                    if not readonly:
                        _copy_out(fh, item, os.path.join(os.path.dirname(name), QUARANTINE,
                                                         f"wal-{seg:016d}.seg@{item.offset}.torn"))
                    cut = item.offset
                    break
                found.regions.append(Region(seg, item.offset, item.end, dict(found.seal)))
                continue
            p = item.payload
            if start is None:
                start = item.end if isinstance(p, StateFrame) else item.offset
            if drop is not None and isinstance(p, BatchFrame) and _covered(drop, p):
                cut = item.offset
                break
            _apply(found, p)
            if isinstance(p, LossFrame) and p.reason == "dropped" and p.segment == seg:
                drop = p
            if (seg, item.end) <= cursor:
                found.cursor = (seg, item.end)
            elif not isinstance(p, StateFrame):
                if isinstance(p, BatchFrame):
                    unacked += p.count
                if found.first_ns is None:
                    found.first_ns = item.appended_ns
    if cut is not None:
        size = cut
        if not readonly:
            with open(name, "r+b") as fh:
                fh.truncate(cut)
                os.fsync(fh.fileno())
    found.segments[seg] = size
    found.data_start[seg] = start if start is not None else size
    found.unacked[seg] = unacked
    if found.cursor == (0, 0):  # the first segment kept, and nothing in it acknowledged
        found.cursor = (seg, found.data_start[seg])


def _covered(drop: LossFrame, p: BatchFrame) -> bool:
    last = p.first_seq + p.count - 1
    return any(r.source == p.source and r.first_seq <= p.first_seq and last <= r.last_seq for r in drop.ranges)


def _apply(found: Found, p: BatchFrame | StateFrame | LossFrame) -> None:
    """Fold one frame into the seal state and positions; bound the damaged regions before it."""
    if isinstance(p, StateFrame):
        for source, point in p.seal.items():
            _raise(found, source, point)
            _bound(found, source, point.seq)
        found.positions.update(p.positions)
    elif isinstance(p, BatchFrame):
        found.positions.update(p.positions)
        if p.count:
            _bound(found, p.source, p.first_seq - 1)
            _raise(found, p.source, SealPoint(p.first_seq + p.count - 1, p.last_chain))
    else:
        for r in p.ranges:
            _bound(found, r.source, r.first_seq - 1)
            _raise(found, r.source, SealPoint(r.last_seq, r.last_chain))


def _raise(found: Found, source: str, point: SealPoint) -> None:
    old = found.seal.get(source)
    if old is None or point.seq > old.seq:
        found.seal[source] = point


def _bound(found: Found, source: str, last: int) -> None:
    for region in found.regions:
        region.bound.setdefault(source, last)


def _declare(found: Found, qdir: str) -> None:
    """The loss ranges of the regions not declared before (a region keeps its note once declared)."""
    for region in found.regions:
        if os.path.exists(os.path.join(qdir, region.name + ".json")):
            continue
        cap = (region.end - region.offset) // MIN_RECORD_BYTES + 1
        for source in sorted(set(region.before) | set(region.bound)):
            first = region.before[source].seq + 1 if source in region.before else 1
            if source in region.bound:
                last = region.bound[source]
                count = last - first + 1
            else:
                last, count = first + cap - 1, -1
                _raise(found, source, SealPoint(last, b""))
            if last >= first:
                region.declared.append(LossRange(source, first, last, count, b""))
        found.declare.extend(region.declared)


def write_notes(path: str, found: Found) -> None:
    """A JSON note per newly quarantined region (and a copy of its bytes), after its LossFrame is durable."""
    qdir = os.path.join(path, QUARANTINE)
    for region in found.regions:
        note = os.path.join(qdir, region.name + ".json")
        if os.path.exists(note):
            continue
        if not region.whole:
            with open(os.path.join(path, f"wal-{region.segment:016d}.seg"), "rb") as fh:
                _copy_out(fh, Bad(region.offset, region.end), os.path.join(qdir, region.name + ".bad"))
        ranges = region.declared
        doc = {"version": 1, "segment": region.segment, "offset": region.offset, "bytes": region.end - region.offset,
               "whole_segment": region.whole,
               "declared": [{"source": r.source, "first_seq": r.first_seq, "last_seq": r.last_seq, "count": r.count}
                            for r in ranges]}
        with open(note, "wb") as out:
            out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
            out.flush()
            os.fsync(out.fileno())


def _copy_out(src: BinaryIO, bad: Bad, dest: str) -> None:
    if os.path.exists(dest):
        return
    with open(dest, "wb") as out:
        src.seek(bad.offset)
        left = bad.end - bad.offset
        while left > 0:
            chunk = src.read(min(left, 1 << 20))
            if not chunk:
                break
            out.write(chunk)
            left -= len(chunk)
        out.flush()
        os.fsync(out.fileno())


def _quarantined_ids(qdir: str) -> list[int]:
    if not os.path.isdir(qdir):
        return []
    return [int(n[4:20]) for n in os.listdir(qdir) if n.startswith("wal-") and n[4:20].isdigit()]


def quarantined(path: str) -> tuple[int, int]:
    """(quarantined segments and regions, bytes kept in quarantine/)."""
    qdir = os.path.join(path, QUARANTINE)
    if not os.path.isdir(qdir):
        return 0, 0
    names = os.listdir(qdir)
    count = sum(1 for n in names if n.endswith(".json"))
    size = sum(os.path.getsize(os.path.join(qdir, n)) for n in names if not n.endswith((".json", ".torn")))
    return count, size


def first_unacked_ns(path_of: Callable[[int], str], segments: dict[int, int], data_start: dict[int, int],
                     ack: tuple[int, int]) -> int | None:
    """When the oldest frame not yet acknowledged was appended (None when there is none)."""
    for seg, size in segments.items():
        if seg < ack[0]:
            continue
        start = max(ack[1], data_start[seg]) if seg == ack[0] else data_start[seg]
        with open(path_of(seg), "rb") as fh:
            for item in scan(fh, start, size):
                if isinstance(item, Frame) and not isinstance(item.payload, StateFrame):
                    return item.appended_ns
    return None


def inspect(path: str, cursor: tuple[int, int] | None) -> Found:
    """The scan of ``recover`` without changing anything (for a WAL a running agent owns)."""
    return recover(path, cursor, lambda: 0, readonly=True)
