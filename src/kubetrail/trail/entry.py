"""The trail entry: the canonical bytes that are a Merkle leaf (docs/specs/trail-format.md).

Format v2 (every record written now)::

    b"kubetrail-entry/v2\\n" + JSON object, keys sorted, no whitespace, UTF-8:
    every column of the record's ``entries`` row named in ENTRY_COLUMNS, exactly as stored
    (``groups_json`` and ``source_ips`` are the stored JSON text, ``meta`` the stored JSON text),
    plus ``body_sha256`` (64 lowercase hex).

The v2 entry is not stored: it is rebuilt from the row, so every column ``kubetrail query`` filters
on is covered by the leaf. Changing a user name or a time in the database to hide an event from a
query changes the leaf, and ``verify`` names the row. The body itself is not in the tree: retention
can delete bodies while every leaf stays verifiable, and a changed body is caught through
``body_sha256``.

Format v1 (stores written before v2) kept the header bytes in ``entries.entry``; they still verify,
but their indexed columns other than key, time, kind, seq and source are not covered::

    b"kubetrail-entry/v1\\n" + {"body_sha256", "key", "kind", "seq", "source", "time"}
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Sequence
from typing import Any

import msgspec
import orjson

ENTRY_PREFIX = b"kubetrail-entry/v1\n"
ENTRY_V2_PREFIX = b"kubetrail-entry/v2\n"
# The columns a v2 entry covers, in the order the store selects them (the JSON keys are sorted).
ENTRY_COLUMNS = ("key", "time", "kind", "source", "seq", "format", "audit_id", "stage", "level", "verb",
                 "username", "groups_json", "impersonated", "resource", "subresource", "api_group", "namespace",
                 "name", "code", "source_ips", "source_ip", "user_agent", "request_uri", "credential_id", "meta")
_META_AT = ENTRY_COLUMNS.index("meta")
# The v2 object's keys in sorted order, and where each one's value is in ENTRY_COLUMNS + (body_sha256,).
_SORTED = tuple(sorted((*ENTRY_COLUMNS, "body_sha256")))
_in_sorted_order = operator.itemgetter(*(len(ENTRY_COLUMNS) if k == "body_sha256" else ENTRY_COLUMNS.index(k)
                                          for k in _SORTED))


def encode_entry(key: str, time: int, kind: str, source: str, seq: int, body_sha256: bytes) -> bytes:
    """A v1 header (kept for tests and for reading old stores; the store writes v2)."""
    return ENTRY_PREFIX + orjson.dumps(
        {"body_sha256": body_sha256.hex(), "key": key, "kind": kind, "seq": seq, "source": source,
         "time": time},
        option=orjson.OPT_SORT_KEYS,
    )


def encode_entry_v2(columns: Sequence[Any], body_sha256: bytes) -> bytes:
    """The v2 entry of a row: ``columns`` are the ENTRY_COLUMNS values as stored.

    Raises ValueError when a value cannot be in an entry (a tampered column of the wrong type).
    The object is built with its keys already in sorted order (``_SORTED``): the same bytes as
    ``orjson.dumps(doc, option=OPT_SORT_KEYS)``, without sorting 26 keys per record (the ingest hot
    path: tests/unit/trail/test_entry_v2_bytes.py compares both).
    """
    if len(columns) != len(ENTRY_COLUMNS):
        raise ValueError(f"an entry has {len(ENTRY_COLUMNS)} columns, not {len(columns)}")
    values = [*columns, body_sha256.hex()]
    meta = values[_META_AT]
    if type(meta) is not str and isinstance(meta, bytes | bytearray | memoryview):
        values[_META_AT] = bytes(meta).decode("utf-8")
    try:
        return ENTRY_V2_PREFIX + orjson.dumps(dict(zip(_SORTED, _in_sorted_order(values), strict=True)))
    except TypeError as exc:
        raise ValueError(f"a column cannot be encoded: {exc}") from exc


# The v2 object as a msgspec Struct whose fields are the keys in sorted order: encoding it spells the
# object in that order without building a dict per record (the writer's hot path, ``encode_new_entry``).
_EntryV2 = msgspec.defstruct("_EntryV2", [(k, object) for k in _SORTED])
_struct_encoder = msgspec.json.Encoder()


def encode_new_entry(columns: Sequence[Any], body_sha256: bytes) -> bytes:
    """``encode_entry_v2`` for a row the store is writing (``store.rows.row_head``): every column a
    ``str``, an ``int`` or ``None``, ``meta`` ``bytes`` or ``str``. The same bytes, ~1.3 µs cheaper per
    record: msgspec and orjson spell strings, integers and null alike (tests/unit/trail/
    test_entry_v2_bytes.py compares them on real rows and on awkward text), but msgspec would write
    other bytes-like values as base64 where ``encode_entry_v2`` refuses them, so rows read back from a
    database (tampered types possible) go through ``encode_entry_v2``.
    """
    values = [*columns, body_sha256.hex()]
    meta = values[_META_AT]
    if type(meta) is not str:
        values[_META_AT] = bytes(meta).decode("utf-8")
    try:
        return ENTRY_V2_PREFIX + _struct_encoder.encode(_EntryV2(*_in_sorted_order(values)))
    except (TypeError, UnicodeEncodeError, OverflowError) as exc:
        raise ValueError(f"a column cannot be encoded: {exc}") from exc


def decode_entry(entry: bytes) -> dict[str, object]:
    for prefix in (ENTRY_V2_PREFIX, ENTRY_PREFIX):
        if entry.startswith(prefix):
            value = orjson.loads(entry[len(prefix):])
            if not isinstance(value, dict):
                raise ValueError("entry is not a JSON object")
            return value
    raise ValueError("not a kubetrail entry")


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 §2.1: MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(b"\x00" + entry).digest()
