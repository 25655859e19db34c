"""Reading never holds more than a bounded amount of one line or document in memory: an overlong
line is skipped as a reject (the lines around it still count), an oversized document is refused."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from kubetrail.record import Decoded, Rejected
from kubetrail.sources import files
from kubetrail.testing import make_event


def items(path: Path) -> list:
    return list(files.read_paths([str(path)]))


@pytest.mark.parametrize("compress", [False, True])
def test_an_overlong_line_is_skipped_and_the_rest_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          compress: bool) -> None:
    monkeypatch.setattr(files, "MAX_LINE_BYTES", 2000)
    good = [orjson.dumps(make_event(f"ok-{i}")) for i in range(3)]
    data = b"\n".join([good[0], b'{"x": "' + b"a" * 50_000 + b'"}', good[1], good[2]]) + b"\n"
    path = tmp_path / ("a.log.gz" if compress else "a.log")
    path.write_bytes(gzip.compress(data) if compress else data)
    got = items(path)
    assert [i.event["auditID"] for i in got if isinstance(i, Decoded)] == ["ok-0", "ok-1", "ok-2"]
    [rej] = [i for i in got if isinstance(i, Rejected)]
    assert rej.position.endswith(":2") and "longer than 2000 bytes" in rej.reason


def test_an_overlong_first_line_and_an_oversized_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "MAX_LINE_BYTES", 2000)
    monkeypatch.setattr(files, "MAX_DOCUMENT_BYTES", 5000)
    first = tmp_path / "first.log"
    first.write_bytes(b'{"y": "' + b"b" * 9000 + b'"}\n' + orjson.dumps(make_event("after")) + b"\n")
    got = items(first)
    assert isinstance(got[0], Rejected) and got[0].position.endswith(":1")
    assert [i.event["auditID"] for i in got if isinstance(i, Decoded)] == ["after"]
    doc = tmp_path / "pretty.json"
    doc.write_text(orjson.dumps({"kind": "EventList", "items": [make_event(f"e{i}") for i in range(40)]},
                                option=orjson.OPT_INDENT_2).decode())
    [rej] = items(doc)
    assert isinstance(rej, Rejected) and "larger than 5000 bytes" in rej.reason
