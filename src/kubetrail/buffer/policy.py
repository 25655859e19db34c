"""What the WAL does when it is full, and how a declared loss becomes records in the trail.

``when_full: block`` (the default): ``Wal.append`` waits for room (acknowledged segments being
deleted, or the filesystem freeing space) and raises ``Pushback`` when its caller's deadline passes;
nothing is dropped. ``drop_oldest``: the oldest unacknowledged frames are replaced, in place, by a
``LossFrame`` that names every record it replaced (source, first..last seq, count); the frame is
delivered like any other, as one ``loss`` record per source, so the loss reaches the trail and the
collector's gap alert (``Records Lost in Transit``, ``declared_drop: true``). Never silent.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import orjson

from kubetrail.buffer.frames import LossFrame, LossRange
from kubetrail.record import AuditMeta, Record, SourceRef

WhenFull = Literal["block", "drop_oldest"]
LOSS_KIND = "loss"


def loss_key(r: LossRange, reason: str) -> str:
    """The same declared loss read twice (a redelivery, a re-declared corrupt region) has one key."""
    text = f"kubetrail-loss/v1\n{r.source}\n{r.first_seq}\n{r.last_seq}\n{reason}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def loss_records(frame: LossFrame, appended_ns: int) -> list[Record]:
    """One ``loss`` record per source range of a ``LossFrame``; the body is the declaration."""
    out = []
    for r in frame.ranges:
        body = {"source": r.source, "first_seq": r.first_seq, "last_seq": r.last_seq, "count": r.count,
                "exact": r.count >= 0, "reason": frame.reason}
        if frame.segment:
            body["wal_segment"] = frame.segment
        out.append(Record(kind=LOSS_KIND, key=loss_key(r, frame.reason), time=appended_ns,
                          source=SourceRef.parse(r.source), body=orjson.dumps(body, option=orjson.OPT_SORT_KEYS),
                          meta=AuditMeta(), format="kubetrail-loss/v1"))
    return out


def merge_ranges(ranges: list[LossRange]) -> list[LossRange]:
    """Adjacent or overlapping ranges of one source folded into one (counts added), by source."""
    by_source: dict[str, list[LossRange]] = {}
    for r in sorted(ranges, key=lambda r: (r.source, r.first_seq)):
        runs = by_source.setdefault(r.source, [])
        if runs and r.first_seq <= runs[-1].last_seq + 1:
            last = runs[-1]
            count = -1 if last.count < 0 or r.count < 0 else last.count + r.count
            chain = r.last_chain if r.last_seq >= last.last_seq else last.last_chain
            runs[-1] = LossRange(r.source, last.first_seq, max(last.last_seq, r.last_seq), count, chain)
        else:
            runs.append(r)
    return [r for runs in by_source.values() for r in runs]
