"""The trail entry: the small canonical header that is a Merkle leaf (docs/specs/trail-format.md).

Format v1, byte for byte::

    b"kubetrail-entry/v1\\n" + JSON object, keys sorted, no whitespace, UTF-8:
    {"body_sha256": <64 lowercase hex>, "key": <str>, "kind": <str>, "seq": <int>,
     "source": <"cluster/node/stream" label>, "time": <int ns>}

The body itself is not in the tree: retention can delete bodies while every leaf stays
verifiable, and a changed body is still caught through ``body_sha256``.
"""

from __future__ import annotations

import hashlib

import orjson

ENTRY_PREFIX = b"kubetrail-entry/v1\n"


def encode_entry(key: str, time: int, kind: str, source: str, seq: int, body_sha256: bytes) -> bytes:
    return ENTRY_PREFIX + orjson.dumps(
        {"body_sha256": body_sha256.hex(), "key": key, "kind": kind, "seq": seq, "source": source,
         "time": time},
        option=orjson.OPT_SORT_KEYS,
    )


def decode_entry(entry: bytes) -> dict[str, object]:
    if not entry.startswith(ENTRY_PREFIX):
        raise ValueError("not a kubetrail v1 entry")
    value = orjson.loads(entry[len(ENTRY_PREFIX):])
    if not isinstance(value, dict):
        raise ValueError("entry is not a JSON object")
    return value


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 §2.1: MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(b"\x00" + entry).digest()
