"""Seal: give every record of a source the next ``seq`` and a running hash over the source's records.

``seq`` counts a source's records from 1 with no gaps, so the collector can name exactly what is
missing (DESIGN.md "Delivery guarantees"); ``chain`` is SHA-256 over the previous chain value, the
seq (8 bytes, big-endian) and the record key, starting from SHA-256(b"kubetrail-seal/v1\\n" +
source label). A receiver that holds the chain value of seq *n* and recomputes it from the records
it stored has proved it holds records 1..n of that source, unaltered and in order.

The state lives in the node's WAL (each frame carries its source's last seq and chain), so sealing
is done under the WAL's lock and committed only when the append is durable: ``seal`` computes,
``commit`` keeps. A failed append re-seals the same records with the same numbers.
"""

from __future__ import annotations

import hashlib

import msgspec

from kubetrail.record import Record

GENESIS = b"kubetrail-seal/v1\n"


class SealPoint(msgspec.Struct, array_like=True, frozen=True):
    """A source's seal state after its last record: the last ``seq`` and the running hash."""

    seq: int
    chain: bytes


def chain_start(source: str) -> bytes:
    return hashlib.sha256(GENESIS + source.encode("utf-8", "surrogateescape")).digest()


def next_chain(previous: bytes, seq: int, key: str) -> bytes:
    return hashlib.sha256(previous + seq.to_bytes(8, "big") + key.encode("utf-8", "surrogateescape")).digest()


class Seal:
    """Per-source seal state; ``seal(source, records)`` numbers them, ``commit`` keeps the result."""

    def __init__(self, state: dict[str, SealPoint] | None = None) -> None:
        self.state: dict[str, SealPoint] = dict(state or {})

    def seal(self, source: str, records: list[Record]) -> SealPoint | None:
        """Set ``seq`` and ``chain`` on the records (all read from ``source``); returns the new state
        for ``commit`` (None when there were no records)."""
        point = self.state.get(source)
        seq = point.seq if point else 0
        chain = (point.chain or chain_start(source)) if point else chain_start(source)
        for r in records:
            seq += 1
            chain = next_chain(chain, seq, r.key)
            r.seq = seq
            r.chain = chain
        return SealPoint(seq, chain) if records else None

    def commit(self, source: str, point: SealPoint | None) -> None:
        if point is not None:
            self.state[source] = point
