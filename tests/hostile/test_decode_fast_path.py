"""The hot path of decoding (issue 18, third pass) against what it replaced.

``formats.decode_line`` takes a short path for a line that is one plain audit Event; the general
path (``_decode_line`` under ``guarded``) must give the very same items for every line: the demo
cluster's traffic, every hostile case raw and in its envelope, and lines built to sit on the
boundary of the short path. ``check_event`` was rewritten to read each field once: each field's
wrong type is named, and every hostile value gets one reason and keeps its content.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import orjson
import pytest
from hostile_cases import LINE_FORMATS, cases, wrap

from kubetrail.demo.scenario import generate
from kubetrail.record import Decoded, Rejected
from kubetrail.sources.formats import (
    _decode_line,
    check_event,
    decode_line,
    decode_line_items,
    guarded,
    loads_lossy,
)


def _demo_lines() -> list[bytes]:
    return [orjson.dumps(ev) for ev in generate(seed=7, events=300).events]


def _hostile_lines() -> list[bytes]:
    lines = []
    for case in cases(copies=1):
        if case.fmt in LINE_FORMATS:
            raw = case.json()
            lines += [raw, wrap(case.fmt, raw)]
    return lines


EDGE_LINES = [
    b'{"auditID":"a","verb":"get"}', b'{"auditID":"a","verb":"get"}\r', b'{"auditID":"a","verb":"get"}\x0c',
    b'{"auditID":"a","verb":"get"} ', b'{"auditID":"a","verb":"get"} x', b'{"auditID":"a"', b"{}", b"{ }",
    b'{"auditID":"a","verb":"get","responseStatus":{"code":"200"}}',
    b'{"auditID":"a","verb":"get","responseStatus":{"code":"2x"}}',
    b'{"auditID":"a","verb":"get","kind":"EventList","items":[]}',
    b'{"kind":"EventList","items":[{"auditID":"a","verb":"get"}]}',
    b'{"kind":"Event","auditID":"a","verb":"get","apiVersion":"audit.k8s.io/v1beta1"}',
    b'{"kind":"Pod","auditID":"a","verb":"get"}', b'{"kind":null,"auditID":"a","verb":"get"}',
    b'{"auditID":"a","verb":"get","apiVersion":["x"]}', b'{"auditID":"a","verb":"get","kind":{"a":1}}',
    b'{"auditID":null,"verb":"get"}', b'{"auditID":"a","verb":"get","user":null,"objectRef":[]}',
    b'{"auditID":"a","verb":"get","user":{"username":1}}', b'{"auditID":"a","verb":"get","user":{"groups":"g"}}',
    b'{"auditID":"a","log":"x","stream":"stdout"}', b'{"log":"{\\"auditID\\":\\"a\\",\\"verb\\":\\"get\\"}","time":"t"}',
    b'{"auditID":"a","verb":"get","d":' + b"[" * 2000 + b"1" + b"]" * 2000 + b"}",
    b'{"auditID":"a","verb":"get","d":' + b'{"d":' * 300 + b"1" + b"}" * 300 + b"}",
    b'{"auditID":"a","verb":"get","s":"\\ud800x"}', b'{"auditID":"a","verb":"get","s":"\xff"}',
    b'{"auditID":"a","verb":"get","auditID":"b"}', b'{"auditID":"a","verb":"get","n":' + b"1" * 400 + b"}",
    b'\xef\xbb\xbf{"auditID":"a","verb":"get"}', b'  {"auditID":"a","verb":"get"}', b'[{"auditID":"a","verb":"get"}]',
]


def _general(line: bytes, position: str) -> list[Any]:
    return list(guarded(_decode_line(line, position), position))


@pytest.mark.parametrize("source", ["demo", "hostile", "edge"])
def test_the_short_path_decodes_every_line_as_the_general_path(source: str) -> None:
    lines = {"demo": _demo_lines, "hostile": _hostile_lines, "edge": lambda: EDGE_LINES}[source]()
    assert len(lines) > 30
    for n, line in enumerate(lines):
        position = f"f:{n}"
        assert list(decode_line(line, position)) == _general(line, position), line[:200]


def test_a_plain_event_line_takes_the_short_path() -> None:
    """Otherwise the comparison above would only compare the general path with itself."""
    line = _demo_lines()[0]
    assert not inspect.isgenerator(decode_line(line, "f:1"))
    assert inspect.isgenerator(decode_line(b'{"kind":"EventList","items":[]}', "f:2"))
    assert list(decode_line(line, "f:1")) == [Decoded(orjson.loads(line), "event", "f:1")]


def test_an_exception_in_the_short_path_costs_the_line_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No input is known to make ``check_event`` raise; if one did, the short path hands the line to
    the general path, whose ``guarded`` turns it into one reject naming the exception's type."""
    from kubetrail.sources import formats

    def boom(obj: Any) -> str | None:
        raise KeyError("a secret the message must not quote")

    monkeypatch.setattr(formats, "check_event", boom)
    items = list(decode_line(b'{"auditID":"a","verb":"get"}', "f:7"))
    assert [(type(i).__name__, i.position, getattr(i, "reason", "")) for i in items] == \
        [("Rejected", "f:7", "cannot be decoded (KeyError)")]


def test_a_parse_failing_otherwise_than_bad_json_costs_the_line_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """orjson raising something else (MemoryError on a huge line, say) is the general path's to name."""
    import types

    from kubetrail.sources import formats

    def loads(data: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(formats, "orjson", types.SimpleNamespace(loads=loads, JSONDecodeError=orjson.JSONDecodeError))
    assert list(decode_line(b'{"auditID":"a","verb":"get"}', "f:8")) == \
        [formats.Rejected("f:8", "cannot be decoded (MemoryError)")]


def _values() -> list[Any]:
    """Every parsed event of the demo and hostile lines (envelopes included: checked as objects)."""
    out = []
    for line in _demo_lines() + _hostile_lines() + EDGE_LINES:
        try:
            value, _ = loads_lossy(line.strip().removeprefix(b"\xef\xbb\xbf"))
        except orjson.JSONDecodeError:
            continue
        out.append(value)
    return out


_EXPECTED_TYPES = {"auditID": str, "verb": str, "stage": str, "requestURI": str, "user": dict, "objectRef": dict,
                   "responseStatus": dict, "sourceIPs": list, "annotations": dict, "userAgent": str,
                   "stageTimestamp": str, "requestReceivedTimestamp": str, "level": str}
_WRONG = {str: 7, dict: "x", list: {"a": 1}}


@pytest.mark.parametrize("field", sorted(_EXPECTED_TYPES))
def test_check_event_names_each_wrongly_typed_field(field: str) -> None:
    typ = _EXPECTED_TYPES[field]
    wrong = _WRONG[typ]
    base = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a", "verb": "get"}
    assert check_event({**base, field: None}) is None  # null is "absent"
    assert check_event({**base, field: wrong}) == f"{field} has type {type(wrong).__name__}, expected {typ.__name__}"


def test_check_event_on_every_hostile_value_is_one_reason_and_keeps_the_object() -> None:
    reasons = set()
    for value in _values():
        a = copy.deepcopy(value)
        reason = check_event(a)
        assert reason is None or isinstance(reason, str), value
        if isinstance(value, dict) and reason is None:
            code = (value.get("responseStatus") or {}).get("code")
            assert a == value or (isinstance(code, str) and a["responseStatus"]["code"] == int(code)), value
        reasons.add(reason)
    assert len(reasons) > 10  # the hostile cases reach most of the reasons


@pytest.mark.parametrize("source", ["demo", "hostile", "edge"])
def test_decode_line_items_gives_the_general_path_s_items(source: str) -> None:
    """The file reader's form of the short path (issue 18, fourth pass): one item as itself, or an
    iterator — the same items either way."""
    lines = {"demo": _demo_lines, "hostile": _hostile_lines, "edge": lambda: EDGE_LINES}[source]()
    singles = 0
    for n, line in enumerate(lines):
        position = f"f:{n}"
        items = decode_line_items(line, position)
        singles += isinstance(items, Decoded | Rejected)
        got = [items] if isinstance(items, Decoded | Rejected) else list(items)
        assert got == _general(line, position), line[:200]
    assert singles  # the single-item form was taken (else only the general path was compared)


def test_the_file_reader_reads_every_line_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mixed streams (JSON lines after YAML blocks, BOMs, CRI, blank runs, hostile lines): the same
    items, positions and rejects as the general reading (the short branch turned off)."""
    import io

    from kubetrail.sources import files

    yaml_block = b"kind: Event\nauditID: y1\nverb: get\nuser:\n  username: bob\n"
    parts = [*_demo_lines()[:40], yaml_block, *_demo_lines()[40:45], b"", b"  ", yaml_block + b"---\n" + yaml_block,
             *_hostile_lines()[:300], b"\xef\xbb\xbf" + _demo_lines()[0], yaml_block, *EDGE_LINES,
             b"2024-01-01T00:00:00Z stdout F " + _demo_lines()[1], b"# a comment", *_demo_lines()[45:60]]
    streams = [b"\n".join(parts) + b"\n", b"\n".join(parts), b"\r\n".join(_demo_lines()[:20])]
    for data in streams:
        new = list(files.read_stream(io.BytesIO(data), "f"))
        monkeypatch.setattr(files, "_SHORT_LINES", False)
        old = list(files.read_stream(io.BytesIO(data), "f"))
        monkeypatch.undo()
        assert len(new) >= 20
        assert new == old
