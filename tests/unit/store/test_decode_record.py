"""A stored row read back as a Record (``rows.decode_record``): the consumers read back every record their
reorder buffers did not keep, so the read is built for speed (all column types checked at once, the
metadata built by position, the source parsed once per label); what must hold is that the record read
back is the one stored, field by field, and that a cell of the wrong type is still named, column by column."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from kubetrail.record import AuditMeta, SourceRef
from kubetrail.sources.formats import Decoded
from kubetrail.stages.extract import to_record
from kubetrail.stages.redaction_key import RedactionKey
from kubetrail.store.rows import COLUMNS, INSERT_COLUMNS, check_types, decode_record, row
from kubetrail.testing import make_event

_NAMES = [c.strip() for c in COLUMNS.split(",")]


def _stored(event: dict[str, Any]) -> tuple[Any, tuple[Any, ...]]:
    """A record and its row as ``records_by_index`` selects it (``COLUMNS``), the body stored plain."""
    r = to_record(Decoded(event, "event", "t:1"), SourceRef(cluster="prod", node="cp-1", stream="audit-file:/var/log/a"),
                  RedactionKey(b"k" * 32))
    r.leaf_index = 7
    inserted = dict(zip(INSERT_COLUMNS, row(r, r.body), strict=True))
    return r, tuple(inserted[n] for n in _NAMES)


def _with_user_extra(event: dict[str, Any], extra: dict[str, list[str]]) -> dict[str, Any]:
    event["user"]["extra"] = extra
    return event


@pytest.mark.parametrize("event", [
    _with_user_extra(make_event("a-1", verb="create", user="system:serviceaccount:ci:deployer", groups=["system:serviceaccounts", "x"],
               resource="pods", subresource="exec", namespace="shop", name="web-1", code=201,
               source_ips=["10.0.0.9", "192.168.1.4"], api_group="", userAgent="kubectl/v1.30.2",
               impersonatedUser={"username": "bob", "groups": ["devs"]}),
        {"authentication.kubernetes.io/credential-id": ["JTI=abc"]}),
    make_event("", verb="get", code=0, stage="ResponseStarted"),
])
def test_a_row_reads_back_as_the_record_stored(event: dict[str, Any]) -> None:
    r, stored = _stored(event)
    back = decode_record(stored, lambda b: b)
    assert msgspec.structs.asdict(back.meta) == msgspec.structs.asdict(r.meta)  # every field, by name
    assert isinstance(back.meta, AuditMeta)
    if back.meta.audit_id:  # the first event fills the fields that come from the meta column and the row
        assert (back.meta.credential_id, back.meta.impersonated_groups, back.meta.source_ips[-1], back.meta.code) == (
            "JTI=abc", ["devs"], "192.168.1.4", 201)
    assert (back.key, back.time, back.kind, back.source, back.seq, back.format, back.body, back.leaf_index,
            back.redactions) == (r.key, r.time, r.kind, r.source, r.seq, r.format, r.body, 7, r.redactions)
    assert SourceRef.parse(r.source.label()) is back.source  # one object per label


@pytest.mark.parametrize(("column", "value", "said"), [
    ("time", b"\x00\x01", "column time holds a BLOB of 2 bytes"),
    ("leaf_index", "7", "column leaf_index holds text"),
    ("code", 2.5, "column code holds a real number"),
    ("meta", None, "column meta holds NULL"),
    ("verb", 3, "column verb holds an integer"),
    ("credential_id", None, "column credential_id holds NULL"),
])
def test_a_cell_of_the_wrong_type_is_named(column: str, value: Any, said: str) -> None:
    _, stored = _stored(make_event("a-2"))
    check_types(stored)
    doctored = list(stored)
    doctored[_NAMES.index(column)] = value
    with pytest.raises(ValueError, match=f"^{said}$"):
        check_types(doctored)
    with pytest.raises(ValueError, match="zip"):  # a row short of columns is refused, not read
        check_types(stored[:-1])
