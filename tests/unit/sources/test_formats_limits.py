"""Hostile nesting and gzip bombs become rejects with a reason, never a RecursionError or gigabytes."""

from __future__ import annotations

import base64
import gzip
import zlib

import orjson
import pytest

from kubetrail.record import Decoded, Rejected
from kubetrail.sources import formats
from kubetrail.sources.formats import MAX_NESTING, decode_line, gunzip_bounded

EVENT = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a", "verb": "get", "stage": "ResponseComplete"}


def test_a_thousand_nested_arrays_is_one_reject() -> None:
    line = b"[" * 1000 + orjson.dumps(EVENT) + b"]" * 1000
    items = list(decode_line(line, "f:1"))
    assert len(items) == 1 and isinstance(items[0], Rejected)
    assert f"deeper than {MAX_NESTING}" in items[0].reason


def test_nested_eventlists_and_envelopes_are_limited_too() -> None:
    doc: object = EVENT
    for _ in range(MAX_NESTING + 2):  # each level escapes the last: keep it small
        doc = {"kind": "EventList", "items": [{"log": orjson.dumps(doc).decode(), "stream": "stdout"}]}
    items = list(decode_line(orjson.dumps(doc), "f:1"))
    assert len(items) == 1 and isinstance(items[0], Rejected) and "deeper than" in items[0].reason


def test_ordinary_nesting_still_decodes() -> None:
    batch = {"kind": "EventList", "items": [EVENT]}
    line = orjson.dumps([[batch]])
    assert [type(i) for i in decode_line(line, "f:1")] == [Decoded]


def test_b64gz_bomb_is_refused_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "MAX_GZIP_BYTES", 4 * 1024 * 1024)
    monkeypatch.setattr(formats.gunzip_bounded, "__defaults__", (4 * 1024 * 1024,))
    inner = b"[" + b" " * (64 * 1024 * 1024) + orjson.dumps(EVENT) + b"]"
    blob = base64.b64encode(gzip.compress(inner, 9))
    assert len(blob) < 200 * 1024
    for line in (blob, orjson.dumps({"awslogs": {"data": blob.decode()}})):
        items = list(decode_line(line, "f:1"))
        assert len(items) == 1 and isinstance(items[0], Rejected), items
        assert "expands to more than" in items[0].reason


def test_gunzip_bounded_reads_members_and_refuses_truncation() -> None:
    data = gzip.compress(b"abc") + gzip.compress(b"def")
    assert gunzip_bounded(data) == b"abcdef"
    big = gzip.compress(b"x" * (3 << 20))
    assert gunzip_bounded(big) == b"x" * (3 << 20)
    with pytest.raises(EOFError):
        gunzip_bounded(big[:-20])
    with pytest.raises(zlib.error):
        gunzip_bounded(b"not gzip at all")
    with pytest.raises(ValueError, match="more than"):
        gunzip_bounded(big, limit=1 << 20)

