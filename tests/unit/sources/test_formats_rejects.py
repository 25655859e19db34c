"""Reject reasons never quote the input (they go to rejects.jsonl and stderr); YAML bombs are refused."""

from __future__ import annotations

import base64
import gzip
import io
import time

import orjson
import pytest

from kubetrail.record import Decoded, Rejected
from kubetrail.sources.cloud_gke import shown
from kubetrail.sources.files import read_stream
from kubetrail.sources.formats import decode_line

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwbGFudGVkLXJlamVjdCJ9.cGxhbnRlZC1zaWc"
EVENT = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a", "verb": "get", "stage": "ResponseComplete"}


def reasons(items: list[Decoded | Rejected]) -> str:
    assert items and all(isinstance(i, Rejected) for i in items), items
    return " | ".join(f"{i.position} {i.reason}" for i in items if isinstance(i, Rejected))


def gke(**pp: object) -> bytes:
    payload = {"@type": "type.googleapis.com/google.cloud.audit.AuditLog", "serviceName": "k8s.io",
               "methodName": "io.k8s.core.v1.pods.get", "resourceName": "core/v1/namespaces/d/pods/p", **pp}
    return orjson.dumps({"insertId": "i", "timestamp": "2024-05-01T10:00:00Z", "protoPayload": payload})


@pytest.mark.parametrize("line", [
    orjson.dumps({**EVENT, "kind": {"t": TOKEN}}),
    orjson.dumps({**EVENT, "kind": TOKEN}),
    orjson.dumps({**EVENT, "kind": TOKEN.split(".")[0]}),
    orjson.dumps({**EVENT, "apiVersion": [TOKEN]}),
    orjson.dumps({**EVENT, "apiVersion": f"v1 {TOKEN}"}),
    gke(serviceName=TOKEN),
    gke(serviceName={"x": TOKEN}),
    gke(methodName=f"io.k8s.core.v1.pods.{TOKEN.replace('.', '')}"),
    base64.b64encode(gzip.compress(b"{}") + TOKEN.encode()),  # gzip: "Not a gzipped file (b'ey')"
])
def test_reasons_do_not_quote_the_input(line: bytes) -> None:
    """A JWT planted in kind, apiVersion, serviceName or the methodName verb is not echoed."""
    text = reasons(list(decode_line(line, "f:1")))
    for needle in (TOKEN, TOKEN.split(".")[0], TOKEN.split(".")[1], TOKEN.replace(".", "")[:30], "eyJ"):
        assert needle not in text


def test_short_identifiers_are_still_shown() -> None:
    """A reason stays useful for the common mistakes: a wrong kind, apiVersion or service."""
    assert "'Pod'" in reasons(list(decode_line(orjson.dumps({**EVENT, "kind": "Pod"}), "f:1")))
    assert "'v1'" in reasons(list(decode_line(orjson.dumps({**EVENT, "apiVersion": "v1"}), "f:1")))
    assert "'compute.googleapis.com'" in reasons(list(decode_line(gke(serviceName="compute.googleapis.com"), "f:1")))
    assert "'frobnicate'" in reasons(list(decode_line(gke(methodName="io.k8s.core.v1.pods.frobnicate"), "f:1")))
    assert [shown(v) for v in ("Pod", "eyJhbGciOi", "x" * 42, "a b", 3, None)] == [
        "'Pod'", "a value of type str", "a value of type str", "a value of type str",
        "a value of type int", "a value of type NoneType"]


@pytest.mark.parametrize("doc", [
    f"kind: !{TOKEN} Event\nauditID: a\n",
    f"kind: !!python/object:{TOKEN} {{}}\n",
    f"a: *{TOKEN}\n",
    f"auditID: a\nverb: get\nuser: {TOKEN}: x\n",
])
def test_yaml_errors_keep_class_and_place_only(doc: str) -> None:
    """A YAML error names its class, line and column; its message (which quotes tags) is dropped."""
    text = reasons(list(read_stream(io.BytesIO(doc.encode()), "y")))
    assert "YAML" in text and "line" in text
    assert "eyJ" not in text and TOKEN.split(".")[1] not in text


def test_gzip_reject_does_not_quote_bytes(tmp_path) -> None:
    """gzip's "Not a gzipped file (b'ey')" quotes input bytes; the reason does not."""
    path = tmp_path / "a.log.gz"
    path.write_bytes(gzip.compress(orjson.dumps(EVENT) + b"\n") + b"eyJhbGciOi" + b"\0" * 20)
    from kubetrail.sources.files import read_paths
    items = list(read_paths([str(path)]))
    assert isinstance(items[0], Decoded)
    assert "ey" not in reasons(items[1:])


BOMB = b"""\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_yaml_billion_laughs_is_rejected_quickly() -> None:
    """Anchors and aliases are refused before anything is built (this one expands to ~390M strings)."""
    t = time.perf_counter()
    items = list(read_stream(io.BytesIO(BOMB), "bomb.yaml"))
    assert time.perf_counter() - t < 2
    assert len(items) == 1 and isinstance(items[0], Rejected)
    assert items[0].position == "bomb.yaml:1" and "anchors and aliases" in items[0].reason


def test_yaml_without_anchors_still_decodes() -> None:
    """``&`` and ``*`` inside values are not anchors: such a stream is read as before."""
    doc = b"---\nkind: Event\napiVersion: audit.k8s.io/v1\nauditID: a&b\nverb: get\nrequestURI: /api?x=1&y=*\n"
    items = list(read_stream(io.BytesIO(doc + doc), "ok.yaml"))
    assert [type(i) for i in items] == [Decoded, Decoded] and items[0].event["requestURI"] == "/api?x=1&y=*"
