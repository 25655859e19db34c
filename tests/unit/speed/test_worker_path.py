"""The preparation workers' per-event path, trimmed (issue 18, s18-wpath): each shortcut against the
plain way it replaced, kept here as the reference.

* a chunk's newline count comes from the line reader (``_Lines.newlines_read``), not ``bytes.count``;
* ``check_event`` reads the common event's field types straight through before the general loop;
* ``workers._split_position`` reads a line's ``:12`` without the regular expression.
"""

from __future__ import annotations

import copy
import io
import random
import re
from typing import Any

import orjson
import pytest

from kubetrail import workers
from kubetrail.record import SourceRef
from kubetrail.sources import files, formats
from kubetrail.sources.cloud_gke import shown
from kubetrail.testing import make_event

# ---------------------------------------------------------------------------------------------- newlines

_PIECES = [b'{"kind":"Event","auditID":"a","verb":"get"}', b"", b"  ", b"\t", b"\r", b"key: v", b"---", b"# c",
           b"x" * 50, b"\xef\xbb\xbf{}", b"[1]", b"  {}", b"  x  ", b"{not json", b"{" + b"y" * 40 + b"}"]


@pytest.mark.parametrize("limit", [10, 45, files.MAX_LINE_BYTES])
def test_the_reader_counts_a_chunk_s_newlines(monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    """Blank runs (also at the end), YAML blocks, over-long lines (skipped, also as the last line), a
    last line without its newline, CR LF: the reader's count is ``bytes.count``'s."""
    monkeypatch.setattr(files, "MAX_LINE_BYTES", limit)
    rng = random.Random(limit)
    for _ in range(3000):
        chunk = b"\n".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 9)))
        chunk += rng.choice([b"", b"\n", b"\n\n", b"\r\n", b"  "])
        first = rng.randint(1, 5)
        lines = files._Lines(io.BytesIO(chunk))
        lines.number = first
        for _ in files._read_lines(lines, "", lines.next(files.MAX_LINE_BYTES)):
            pass
        assert lines.newlines_read(first) == chunk.count(b"\n"), chunk


def test_a_worker_s_chunk_reports_the_newlines_it_holds(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from kubetrail.stages.redaction_key import load_or_create

    monkeypatch.setattr(files, "MAX_LINE_BYTES", 300)
    monkeypatch.setitem(workers._state, "key", load_or_create(str(tmp_path / "k")))
    monkeypatch.delitem(workers._state, "rules", raising=False)
    ev = orjson.dumps(make_event("nl-1"))
    for chunk in (ev + b"\n\n\n", ev + b"\n" + b"z" * 400, b"\n" * 5, b"", ev, b"kind: Event\nauditID: y\n\n" + ev):
        assert workers._prepare(chunk, 7, SourceRef(stream="s"), None).newlines == chunk.count(b"\n")


def test_a_reader_not_read_to_its_end_has_no_count() -> None:
    lines = files._Lines(io.BytesIO(b"{}\n{}\n"))
    lines.next(100)
    assert lines.newlines_read(1) is None


# ----------------------------------------------------------------------------------------- check_event

_API = ("audit.k8s.io/v1", "audit.k8s.io/v1beta1", "audit.k8s.io/v1alpha1")


def check_event_reference(obj: Any) -> str | None:
    """``check_event`` as it was before the straight-through reading."""
    if not isinstance(obj, dict):
        return f"not a JSON object ({type(obj).__name__})"
    kind = obj.get("kind")
    if kind is not None and kind != "Event":
        return f"kind is {shown(kind)}, not 'Event'"
    api = obj.get("apiVersion")
    if api is not None and api not in _API:
        return f"apiVersion {shown(api)} is not audit.k8s.io"
    if "auditID" not in obj or "verb" not in obj:
        return "missing auditID or verb"
    for field, typ in formats._FIELD_TYPES:
        value = obj.get(field)
        if value is not None and not isinstance(value, typ):
            return f"{field} has type {type(value).__name__}, expected {typ.__name__}"
    user = obj.get("user") or {}
    if "username" in user and not isinstance(user["username"], str):
        return "user.username is not a string"
    if "groups" in user and user["groups"] is not None and not isinstance(user["groups"], list):
        return "user.groups is not a list"
    status = obj.get("responseStatus") or {}
    if "code" in status and not isinstance(status["code"], int | None):
        if isinstance(status["code"], str) and status["code"].isdigit():
            status["code"] = int(status["code"])
        else:
            return "responseStatus.code is not an integer"
    return None


class _Text(str):
    pass


class _Map(dict):  # type: ignore[type-arg]
    pass


class _Items(list):  # type: ignore[type-arg]
    pass


def _variants() -> list[Any]:
    base = make_event("ce-1", user="alice", name="o")
    odd: list[Any] = [None, 0, 1.5, True, "x", _Text("t"), _Map(a=1), _Items([1]), [], {}, ["a"], {"k": "v"}]
    out: list[Any] = [base, {}, [], "x", {"auditID": "a", "verb": "get"}]
    for field, _ in formats._FIELD_TYPES:
        for value in odd:
            out.append({**base, field: value})
        out.append({k: v for k, v in base.items() if k != field})
    for value in odd:
        out += [{**base, "user": {"username": value}}, {**base, "user": {"groups": value}},
                {**base, "responseStatus": {"code": value}}, {**base, "kind": value}, {**base, "apiVersion": value}]
    out += [{**base, "responseStatus": {"code": "404"}}, {**base, "responseStatus": {"code": "4x"}}]
    return out


def test_check_event_is_the_reference() -> None:
    for obj in _variants():
        mine, theirs = copy.deepcopy(obj), copy.deepcopy(obj)
        assert formats.check_event(mine) == check_event_reference(theirs), obj
        assert mine == theirs  # the same in-place change (a code given as digits)


def test_a_wrong_type_is_still_named() -> None:
    base = make_event("ce-2")
    assert formats.check_event({**base, "level": 3}) == "level has type int, expected str"
    assert formats.check_event({**base, "level": _Text("ok")}) is None  # a subclass passes, as isinstance says


# ------------------------------------------------------------------------------------------- positions

_POSITION = re.compile(r":(\d+)")


def split_reference(position: str) -> tuple[int, str]:
    m = _POSITION.match(position)
    if m is None:
        return -1, position
    return int(m[1]), position[m.end():]


@pytest.mark.parametrize("position", [":12", ":1", ":0", ":12.items[0]", ":7[3]", ":", "", "12", ":x", ":12a",
                                      ":\u0663\u0664", ":1\u00b2", "::3", ":3.records[0].properties.log"])
def test_split_position_is_the_reference(position: str) -> None:
    assert workers._split_position(position) == split_reference(position)
