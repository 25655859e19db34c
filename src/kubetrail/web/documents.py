"""The public JSON documents, ONE serialisation for the CLI's ``--json`` and ``/api/v1``.

``query --json`` and ``/api/v1/events`` print ``record_document``; ``alerts --json`` and
``/api/v1/alerts`` print ``Alert.to_json()``; ``alerts show ID --json`` and ``/api/v1/alerts/ID``
print ``alert_document``; ``creds list --json`` / ``creds show --json`` and
``/api/v1/credentials[/ID]`` print ``credentials.report.list_credentials`` / ``show``;
``status --json`` and ``/api/v1/status`` print ``web.status.overview``. The API wraps listings in
``{"items": [...], "next": CURSOR|null}`` pages; each item is the CLI's line, byte for byte.

Contract: add fields, never rename. Nothing here reads a body the store did not redact: bodies
are stored after redaction, so showing them shows only what survived it.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import orjson

from kubetrail.errors import InputError, NotFoundError
from kubetrail.record import Record
from kubetrail.timefmt import format_ns

if TYPE_CHECKING:
    from kubetrail.store.api import Store


def record_document(r: Record) -> dict[str, Any]:
    """The public JSON shape of one stored event (a contract: add fields, never rename)."""
    m = r.meta
    return {
        "key": r.key,
        "leaf_index": r.leaf_index,
        "time": format_ns(r.time),
        "time_ns": r.time,
        "kind": r.kind,
        "auditID": m.audit_id,
        "stage": m.stage,
        "verb": m.verb,
        "user": m.user,
        "groups": m.groups,
        "impersonatedUser": m.impersonated_user or None,
        "resource": m.resource,
        "subresource": m.subresource,
        "apiGroup": m.api_group,
        "namespace": m.namespace,
        "name": m.name,
        "code": m.code,
        "sourceIPs": m.source_ips,
        "userAgent": m.user_agent,
        "requestURI": m.request_uri,
        "credentialID": m.credential_id or None,
        "source": r.source.label(),
        "cluster": r.source.cluster or None,
        "format": r.format,
    }


def alert_document(store: Store, alert_id: int) -> dict[str, Any]:
    """One alert with its evidence records (each with the redacted event), as ``alerts show --json``."""
    from kubetrail.alerts.store import get_alert  # here: `query` imports this module and starts fast

    alert = get_alert(store, alert_id)
    if alert is None:
        raise NotFoundError(f"no alert {alert_id} (`kubetrail alerts` lists them)")
    records = [store.get(e.key) for e in alert.evidence]
    out = alert.to_json()
    out["records"] = [record_document(r) | {"event": r.event()} for r in records if r is not None]
    return out


def encode_cursor(*parts: int | str) -> str:
    """An opaque page cursor (the sort key of the last item shown)."""
    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode().rstrip("=")


def decode_cursor(cursor: str, types: tuple[type, ...]) -> tuple[Any, ...]:
    """The parts of a cursor made by ``encode_cursor``; InputError when it was not."""
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise InputError("cursor: not a cursor from a previous page") from exc
    if not isinstance(parts, list) or len(parts) != len(types) or not all(
            isinstance(p, t) and not isinstance(p, bool) for p, t in zip(parts, types, strict=True)):
        raise InputError("cursor: not a cursor from a previous page")
    return tuple(parts)
