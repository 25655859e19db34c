"""The WAL's bytes: segment header, frame header, frame payloads, and a scanner that resyncs.

The format itself is written down in ``buffer/wal.py`` (module docstring) and in
``docs/specs/wal-format.md``; this module is its only encoder and decoder.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

import crc32c
import msgspec

from kubetrail.stages.seal import SealPoint

SEGMENT_MAGIC = b"KTWALSEG"
SEGMENT_VERSION = 1
SEGMENT_HEADER = struct.Struct("<8sIIQQ")  # magic, version, reserved (0), segment id, created_ns
FRAME_MAGIC = b"KTF1"
FRAME_HEADER = struct.Struct("<4sIIIQ")  # magic, crc32c, payload length, record count, appended_ns
MAX_FRAME_BYTES = 64 << 20  # a length above this is corruption, not a frame
_SCAN_CHUNK = 1 << 20


class LossRange(msgspec.Struct, array_like=True, frozen=True):
    """Records of one source that will never be delivered: ``first_seq``..``last_seq``.

    ``count`` is the number of records known to be in the range (-1 when the range is an upper bound
    derived from the size of a corrupted region); ``last_chain`` is the seal hash after ``last_seq``
    (empty when unknown)."""

    source: str
    first_seq: int
    last_seq: int
    count: int
    last_chain: bytes = b""


class BatchFrame(msgspec.Struct, tag=1, array_like=True):
    """One append: records of one source, and the source positions that are durable with them."""

    source: str
    first_seq: int
    count: int
    last_chain: bytes
    positions: dict[str, str]
    records: msgspec.Raw  # record.encode_records(...): decoded only when delivered


class StateFrame(msgspec.Struct, tag=2, array_like=True):
    """First frame of every segment: the seal state and positions as of the segment's start."""

    seal: dict[str, SealPoint]
    positions: dict[str, str]


class LossFrame(msgspec.Struct, tag=3, array_like=True):
    """A declared loss, delivered as ``loss`` records. ``reason`` is ``dropped`` (the when_full
    policy; ``segment`` is the segment whose unacknowledged frames it replaced) or ``corrupt``."""

    reason: str
    ranges: list[LossRange]
    segment: int = 0


Payload = BatchFrame | StateFrame | LossFrame
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Payload)


def segment_header(segment_id: int, created_ns: int) -> bytes:
    return SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION, 0, segment_id, created_ns)


def parse_segment_header(data: bytes) -> tuple[int, int] | None:
    """``(segment id, created_ns)``, or None when the header is not a v1 segment header."""
    if len(data) < SEGMENT_HEADER.size:
        return None
    magic, version, _reserved, seg_id, created = SEGMENT_HEADER.unpack_from(data)
    if magic != SEGMENT_MAGIC or version != SEGMENT_VERSION:
        return None
    return seg_id, created


def encode_frame(payload: Payload, count: int, appended_ns: int) -> bytes:
    body = _encoder.encode(payload)
    tail = struct.pack("<IIQ", len(body), count, appended_ns)
    crc = crc32c.crc32c(body, crc32c.crc32c(tail))
    return FRAME_HEADER.pack(FRAME_MAGIC, crc, len(body), count, appended_ns) + body


def decode_payload(body: bytes) -> Payload:
    return _decoder.decode(body)


class Frame(msgspec.Struct):
    """A frame found on disk: where it is, its header fields and its decoded payload."""

    offset: int
    end: int
    count: int
    appended_ns: int
    payload: Payload


class Bad(msgspec.Struct):
    """Bytes ``offset``..``end`` that are not frames (torn or corrupted)."""

    offset: int
    end: int


def read_frame_at(fh: BinaryIO, offset: int, limit: int) -> Frame | None:
    """The valid frame starting exactly at ``offset`` (ending at or before ``limit``), or None."""
    fh.seek(offset)
    head = fh.read(FRAME_HEADER.size)
    if len(head) < FRAME_HEADER.size:
        return None
    magic, crc, length, count, appended = FRAME_HEADER.unpack(head)
    end = offset + FRAME_HEADER.size + length
    if magic != FRAME_MAGIC or length > MAX_FRAME_BYTES or end > limit:
        return None
    body = fh.read(length)
    if len(body) != length or crc32c.crc32c(body, crc32c.crc32c(head[8:])) != crc:
        return None
    try:
        payload = decode_payload(body)
    except msgspec.DecodeError:
        return None
    return Frame(offset, end, count, appended, payload)


def scan(fh: BinaryIO, start: int, limit: int) -> Iterator[Frame | Bad]:
    """Every frame from ``start`` to ``limit``, in order; runs of bytes that are not a valid frame
    come out as one ``Bad`` each (the scan resyncs on the next frame magic whose CRC holds)."""
    offset = start
    bad_from: int | None = None
    while offset < limit:
        frame = read_frame_at(fh, offset, limit)
        if frame is not None:
            if bad_from is not None:
                yield Bad(bad_from, offset)
                bad_from = None
            yield frame
            offset = frame.end
            continue
        if bad_from is None:
            bad_from = offset
        offset = _next_magic(fh, offset + 1, limit)
    if bad_from is not None:
        yield Bad(bad_from, limit)


def _next_magic(fh: BinaryIO, start: int, limit: int) -> int:
    """The offset of the next ``FRAME_MAGIC`` at or after ``start`` (``limit`` when there is none)."""
    pos = start
    while pos < limit:
        fh.seek(pos)
        chunk = fh.read(min(_SCAN_CHUNK, limit - pos) + len(FRAME_MAGIC) - 1)
        i = chunk.find(FRAME_MAGIC)
        if i >= 0 and pos + i < limit:
            return pos + i
        if len(chunk) < len(FRAME_MAGIC):
            break
        pos += max(1, len(chunk) - len(FRAME_MAGIC) + 1)
    return limit
