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
from kubetrail.stages.redact import needs_deep_scan, redact_event
from kubetrail.stages.redaction_key import RedactionKey
from kubetrail.timefmt import parse_rfc3339_ns as parse_time_ns

CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"


INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def _strs(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _indexable_int(value: Any) -> bool:
    """An integer the store returns exactly as the leaf saw it: ``True`` is stored as 1 and
    2**63 does not fit a column, so either would make the row disagree with its leaf forever."""
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def _time_ns(event: dict[str, Any], field: str, notes: list[str]) -> int | None:
    value = event.get(field)
    ns = parse_time_ns(value)
    if ns is None and value is not None:
        notes.append(f"{field} is not an RFC 3339 time between 1678 and 2262: not indexed")
    return ns


def extract_meta(event: dict[str, Any], lossy: list[str] | None = None) -> AuditMeta:
    """The indexed fields. Every value is normalised to what the store round-trips exactly (the
    leaf covers the columns, see trail/entry.py); what could not be indexed is named in ``lossy``
    (the body keeps the original)."""
    notes = list(lossy or [])
    user = event.get("user") if isinstance(event.get("user"), dict) else {}
    imp = event.get("impersonatedUser") if isinstance(event.get("impersonatedUser"), dict) else {}
    ref = event.get("objectRef") if isinstance(event.get("objectRef"), dict) else {}
    status = event.get("responseStatus") if isinstance(event.get("responseStatus"), dict) else {}
    extra = user.get("extra") if isinstance(user.get("extra"), dict) else {}
    cred = extra.get(CREDENTIAL_ID)
    code = status.get("code")
    name = ref.get("name") or ""
    if not name and event.get("verb") == "create":
        for field in ("responseObject", "requestObject"):
            obj = event.get(field)
            md = obj.get("metadata") if isinstance(obj, dict) else None
            if isinstance(md, dict) and isinstance(md.get("name"), str):
                name = md["name"]
                break
    if code is not None and not _indexable_int(code):
        notes.append("responseStatus.code is not a 64-bit integer: not indexed")
        code = None
    received = _time_ns(event, "requestReceivedTimestamp", notes)
    if received is None and "timestamp" in event:
        received = _time_ns(event, "timestamp", notes)
    stage_time = _time_ns(event, "stageTimestamp", notes)
    return AuditMeta(
        audit_id=str(event.get("auditID", "")),
        stage=str(event.get("stage", "")),
        level=str(event.get("level", "")),
        verb=str(event.get("verb", "")),
        user=str(user.get("username", "")),
        groups=_strs(user.get("groups")),
        uid=str(user.get("uid", "")),
        impersonated_user=str(imp.get("username", "")),
        impersonated_groups=_strs(imp.get("groups")),
        resource=str(ref.get("resource", "")),
        subresource=str(ref.get("subresource", "")),
        api_group=str(ref.get("apiGroup", "")),
        api_version=str(ref.get("apiVersion", "")),
        namespace=str(ref.get("namespace", "")),
        name=str(name),
        code=code,
        source_ips=_strs(event.get("sourceIPs")),
        user_agent=str(event.get("userAgent", "")),
        request_uri=str(event.get("requestURI", "")),
        credential_id=str(cred[0]) if isinstance(cred, list) and cred else "",
        request_received=received,
        stage_time=stage_time,
        lossy=notes,
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
    lossy = list(decoded.lossy)
    try:
        redactions = redact_event(event, scan_jwts=False, key=redaction_key)
        body = orjson.dumps(event)
    except (TypeError, RecursionError):  # orjson.JSONEncodeError is a TypeError
        notes: set[str] = set()
        event = _sanitized(event, 0, notes)
        lossy.extend(sorted(notes))
        redactions = redact_event(event, scan_jwts=True, key=redaction_key)  # the full pass: no second one below
        body = orjson.dumps(event)
    else:
        if needs_deep_scan(body):
            redactions += redact_event(event, scan_jwts=True, key=redaction_key)
            body = orjson.dumps(event)
    # orjson leaves its output buffer's whole capacity allocated behind the bytes (4 KB for a 100-byte
    # event, ~8 KB for the 2.9 KB ones, 32 KB for one long string): an exact copy (~0.3 µs) is what
    # held records keep (the reorder buffers hold thousands; ~2.8x less memory for their bodies).
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
