"""``encode_entry_v2`` builds its JSON object with the keys already sorted (issue 18: no per-record
sort), and the writer spells it with msgspec (``encode_new_entry``). Every leaf ever written must keep
its bytes, so this compares both with the original spelling (a dict in ENTRY_COLUMNS order dumped with
``OPT_SORT_KEYS``) over real rows and awkward values."""

from __future__ import annotations

import hashlib
import random

import orjson
import pytest

from kubetrail.record import Decoded, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.store.rows import _log_row, row_head
from kubetrail.testing import make_event
from kubetrail.trail.entry import ENTRY_COLUMNS, ENTRY_V2_PREFIX, encode_entry_v2, encode_new_entry, leaf_hash


def reference(columns, body_sha256: bytes) -> bytes:  # type: ignore[no-untyped-def]
    """encode_entry_v2 as written before issue 18."""
    doc = dict(zip(ENTRY_COLUMNS, columns, strict=True))
    meta = columns[ENTRY_COLUMNS.index("meta")]
    if isinstance(meta, bytes | bytearray | memoryview):
        doc["meta"] = bytes(meta).decode("utf-8")
    doc["body_sha256"] = body_sha256.hex()
    return ENTRY_V2_PREFIX + orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def real_columns(i: int) -> tuple:  # type: ignore[type-arg]
    ev = make_event(f"{i:08d}-bytes", user=["alice", "system:node:n1", "ünïcode ✓"][i % 3], name=f"o-{i}",
                    time=f"2024-05-01T00:00:{i % 60:02d}Z")
    rec = to_record(Decoded(ev, "event", f"p:{i}"), SourceRef(cluster="c", node="n", stream="s"))
    return row_head(rec)[:len(ENTRY_COLUMNS)]


def test_same_bytes_as_the_sorted_dump_on_real_rows() -> None:
    for i in range(30):
        cols = real_columns(i)
        digest = hashlib.sha256(str(i).encode()).digest()
        assert encode_entry_v2(cols, digest) == reference(cols, digest)
        assert encode_new_entry(cols, digest) == reference(cols, digest)


def test_the_writers_leaf_is_the_reference_leaf() -> None:
    """What the store writes (row_head's leaf hash) for audit records and log lines."""
    from kubetrail.record import LogMeta, Record

    for i in range(30):
        ev = make_event(f"{i:08d}-leaf", user=["alice", "ünïcode ✓\u2028"][i % 2], name=f"o-{i}\x01")
        head = row_head(to_record(Decoded(ev, "event", f"p:{i}"), SourceRef(cluster="c", node="n", stream="s")))
        assert head[-4] == leaf_hash(reference(head[:len(ENTRY_COLUMNS)], head[-3]))  # (…, key_head, audit_head)
        log = Record(kind="container", key=f"k{i}", time=i, source=SourceRef(stream="s"), seq=i, format="cri",
                     meta=LogMeta(node="n", namespace="ns", pod=f"p\u2029{i}", labels={"a": "ü\x7f"}),
                     body=b"line")
        lh = _log_row(log, log.meta)
        assert lh[-4] == leaf_hash(reference(lh[:len(ENTRY_COLUMNS)], lh[-3]))


def test_same_bytes_for_awkward_values() -> None:
    rnd = random.Random(18)
    base = list(real_columns(0))
    texts = ["", "\x00\x1f\x7f", '"quoted" \\ back', "\u2028\u2029", "emoji 🚀", "/slash/", "é" * 50,
             "".join(map(chr, range(0x80))), "\ufeff\x85\u00a0<>&'"]
    for _ in range(300):
        cols = list(base)
        for j, name in enumerate(ENTRY_COLUMNS):
            if name in ("time", "seq"):
                cols[j] = rnd.choice([0, -1, 2**62, rnd.randrange(2**40)])
            elif name == "code":
                cols[j] = rnd.choice([None, 200, 403])
            elif name == "meta":
                cols[j] = rnd.choice([b'["u"]', bytearray(b"[]"), memoryview(b'{"a":1}'), '["text"]'])
            else:
                cols[j] = rnd.choice(texts)
        digest = rnd.randbytes(32)
        assert encode_entry_v2(cols, digest) == reference(cols, digest)
        assert encode_new_entry(cols, digest) == reference(cols, digest)


def test_a_column_of_the_wrong_type_or_count_is_a_value_error() -> None:
    cols = list(real_columns(1))
    with pytest.raises(ValueError, match="columns"):
        encode_entry_v2(cols[:-1], b"\x00" * 32)
    cols[ENTRY_COLUMNS.index("username")] = b"binary"  # a tampered cell: bytes cannot be in an entry
    with pytest.raises(ValueError, match="cannot be encoded"):
        encode_entry_v2(cols, b"\x00" * 32)
    cols[ENTRY_COLUMNS.index("username")] = "alice"
    cols[ENTRY_COLUMNS.index("meta")] = b"\xff\xfe"
    with pytest.raises(ValueError):
        encode_entry_v2(cols, b"\x00" * 32)
