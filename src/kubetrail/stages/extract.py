"""Turn a decoded audit Event into a ``Record``: redact, extract the indexed fields, key it.

The key is the canonical event identity (``stages/identity.py``, docs/specs/event-identity.md):
SHA-256 over the redacted event without its envelope, keys sorted. So the same event delivered as a
log line, an ``EventList`` item, CRI- or Docker-wrapped or as v1beta1 shares a key, while an
attacker who reuses an ``Audit-ID`` with other content still produces a new record. The body is
stored as decoded (with whatever ``kind``/``apiVersion`` the first delivery had).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from kubetrail.record import AuditMeta, Decoded, Record, SourceRef, printable
from kubetrail.stages.identity import event_key
from kubetrail.stages.redact import redact_event
from kubetrail.stages.redaction_key import RedactionKey
from kubetrail.stages.secret_text import has_trigger
from kubetrail.timefmt import parse_rfc3339_ns as parse_time_ns

CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"


INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def _indexable_int(value: Any) -> bool:
    """An integer the store returns exactly as the leaf saw it: ``True`` is stored as 1 and
    2**63 does not fit a column, so either would make the row disagree with its leaf forever."""
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


_NO_FIELDS: dict[str, Any] = {}  # read-only stand-in for a missing (or non-object) sub-object
_NOT_TIME = "{} is not an RFC 3339 time between 1678 and 2262: not indexed"


def extract_meta(event: dict[str, Any], lossy: list[str] | None = None) -> AuditMeta:
    """The indexed fields. Every value is normalised to what the store round-trips exactly (the
    leaf covers the columns, see trail/entry.py); what could not be indexed is named in ``lossy``
    (the body keeps the original).

    Runs for every event (prepare's largest Python part): each field is read once, sub-objects
    that are missing share one empty dict, the two times are parsed inline. The answer is the one
    of the plain reading field by field (tests/unit/stages/test_extract_meta_reference.py)."""
    notes = list(lossy) if lossy else []
    get = event.get
    user = get("user")
    if not isinstance(user, dict):
        user = _NO_FIELDS
    imp = get("impersonatedUser")
    if not isinstance(imp, dict):
        imp = _NO_FIELDS
    ref = get("objectRef")
    if not isinstance(ref, dict):
        ref = _NO_FIELDS
    status = get("responseStatus")
    code = status.get("code") if isinstance(status, dict) else None
    extra = user.get("extra")
    cred = extra.get(CREDENTIAL_ID) if isinstance(extra, dict) else None
    verb = get("verb", "")
    name = ref.get("name") or ""
    if not name and verb == "create":
        for field in ("responseObject", "requestObject"):
            obj = get(field)
            md = obj.get("metadata") if isinstance(obj, dict) else None
            if isinstance(md, dict) and isinstance(md.get("name"), str):
                name = md["name"]
                break
    if code is not None and not _indexable_int(code):
        notes.append("responseStatus.code is not a 64-bit integer: not indexed")
        code = None
    value = get("requestReceivedTimestamp")
    received = parse_time_ns(value)
    if received is None:
        if value is not None:
            notes.append(_NOT_TIME.format("requestReceivedTimestamp"))
        if "timestamp" in event:
            value = event["timestamp"]
            received = parse_time_ns(value)
            if received is None and value is not None:
                notes.append(_NOT_TIME.format("timestamp"))
    value = get("stageTimestamp")
    stage_time = parse_time_ns(value)
    if stage_time is None and value is not None:
        notes.append(_NOT_TIME.format("stageTimestamp"))
    groups = user.get("groups")
    ips = get("sourceIPs")
    imp_groups = imp.get("groups")
    # Positional, in AuditMeta's field order (the keywords cost ~1 µs per event); each value is
    # what the field of that name was given before (tests/hostile/test_extract_meta_reference.py).
    return AuditMeta(
        str(get("auditID", "")),  # audit_id
        str(get("stage", "")),  # stage
        str(get("level", "")),  # level
        str(verb),  # verb
        str(user.get("username", "")),  # user
        [str(v) for v in groups] if isinstance(groups, list) else [],  # groups
        str(user.get("uid", "")),  # uid
        str(imp.get("username", "")),  # impersonated_user
        [str(v) for v in imp_groups] if isinstance(imp_groups, list) else [],  # impersonated_groups
        str(ref.get("resource", "")),  # resource
        str(ref.get("subresource", "")),  # subresource
        str(ref.get("apiGroup", "")),  # api_group
        str(ref.get("apiVersion", "")),  # api_version
        str(ref.get("namespace", "")),  # namespace
        str(name),  # name
        code,  # code
        [str(v) for v in ips] if isinstance(ips, list) else [],  # source_ips
        str(get("userAgent", "")),  # user_agent
        str(get("requestURI", "")),  # request_uri
        str(cred[0]) if isinstance(cred, list) and cred else "",  # credential_id
        received,  # request_received
        stage_time,  # stage_time
        notes,  # lossy
    )


def event_time(meta: AuditMeta) -> int:
    return meta.stage_time or meta.request_received or 0


MAX_DEPTH = 64  # far beyond any real audit event; orjson refuses to write more than 255 levels
_INT64 = (-(1 << 63), (1 << 64) - 1)


def _sanitized(node: Any, depth: int, notes: set[str]) -> Any:
    """A JSON-safe copy: subtrees deeper than MAX_DEPTH replaced by a marker, integers beyond 64
    bits and non-JSON values (YAML ``!!binary``, dates) as strings. Only used when plain
    serialisation failed, so an attacker's crafted object cannot keep its event out of the trail."""
    if isinstance(node, dict | list) and depth >= MAX_DEPTH:
        notes.add(f"nested deeper than {MAX_DEPTH} levels: the rest was cut")
        return "[kubetrail: cut, nested too deep]"
    if isinstance(node, dict):
        return {_text(str(k), notes): _sanitized(v, depth + 1, notes) for k, v in node.items()}
    if isinstance(node, list):
        return [_sanitized(v, depth + 1, notes) for v in node]
    if isinstance(node, str):
        return _text(node, notes)
    if isinstance(node, bool) or node is None or isinstance(node, float):
        return node
    if isinstance(node, int):
        if _INT64[0] <= node <= _INT64[1]:
            return node
        notes.add("integer beyond 64 bits kept as a string")
        return str(node)
    notes.add(f"{type(node).__name__} value kept as a string")
    return base64.b64encode(node).decode() if isinstance(node, bytes) else str(node)


def _text(s: str, notes: set[str]) -> str:
    """Valid UTF-8 (YAML can spell lone surrogates, which no JSON writer or database accepts)."""
    fixed = printable(s)
    if fixed is not s:
        notes.add("text that is not valid UTF-8 kept with \\x escapes")
    return fixed


def to_record(decoded: Decoded, source: SourceRef, redaction_key: RedactionKey | None = None) -> Record:
    """Redact ``decoded.event`` in place and wrap it. ``redaction_key`` keys the digests of what
    was removed (the store's key; see ``stages/redaction_key.py``). The record keeps the redacted
    event as its parsed body (``Record.event``): it is exactly what ``body`` was serialised from."""
    event = decoded.event
    lossy = decoded.lossy  # extract_meta copies it
    try:
        redactions = redact_event(event, scan_jwts=False, key=redaction_key)
        body = orjson.dumps(event)
    except (TypeError, RecursionError):  # orjson.JSONEncodeError is a TypeError
        notes: set[str] = set()
        event = _sanitized(event, 0, notes)
        lossy = [*lossy, *sorted(notes)]
        redactions = redact_event(event, scan_jwts=True, key=redaction_key)  # the full pass: no second one below
        body = orjson.dumps(event)
    else:
        if has_trigger(body):  # ``needs_deep_scan``, called directly (per event)
            redactions += redact_event(event, scan_jwts=True, key=redaction_key)
            body = orjson.dumps(event)
    # orjson leaves its output buffer's whole capacity allocated behind the bytes (4 KB for a 100-byte
    # event, ~8 KB for the 2.9 KB ones, 32 KB for one long string): an exact copy (~0.3 µs) is what
    # held records keep (the reorder buffers hold thousands; ~2.8x less memory for their bodies).
    # (Kept in the preparation workers too, where the record is encoded at once: without the copy
    # each chunk holds ~350 of orjson's larger buffers, and a worker took ~5 % more CPU per event.)
    body = bytes(memoryview(body))
    meta = extract_meta(event, lossy)
    record = Record(
        kind="audit",
        key=event_key(event),
        time=event_time(meta),
        source=source,
        body=body,
        meta=meta,
        format=decoded.format,
        redactions=redactions,
    )
    record.__dict__["_event"] = event  # == orjson.loads(body): consumers need not parse it again
    return record
