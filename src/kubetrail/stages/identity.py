"""The record key of an audit event: SHA-256 over its canonical form (docs/specs/event-identity.md).

One event reaches kubetrail in many envelopes: a log line with ``kind``/``apiVersion``, an
``EventList`` item without them, CRI- or Docker-wrapped, keys in another order, or as
``audit.k8s.io/v1beta1``. The key must be the same for all of them, so the same event read from
the log file and POSTed by the webhook backend is stored once. It must still cover the whole
event: ``auditID`` is client-settable (``Audit-ID`` header), so a reused ID with other content is a
new record (and an alert), never a "duplicate" an attacker could hide behind.

The canonical form drops only what the transport adds (``kind``, ``apiVersion``) and what the
apiserver derives (the v1beta1 ``timestamp`` and ``metadata.creationTimestamp``, each the
seconds-truncated copy of a ``*Timestamp`` field, mirroring the apiserver's own conversion in
``k8s.io/apiserver/pkg/apis/audit/v1beta1/conversion.go``), then serialises with sorted keys and no
whitespace. It is computed over the *redacted* event: keying un-redacted content would let anyone
holding the store confirm a guessed secret by recomputing a key.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

from kubetrail.timefmt import parse_rfc3339_ns

KEY_VERSION = b"kubetrail-audit-key/v2\n"
LEGACY_KEY_VERSION = b"kubetrail-audit-key/v1\n"  # SHA-256 over the body bytes as delivered (before v2)
AUDIT_API_VERSIONS = frozenset({"audit.k8s.io/v1", "audit.k8s.io/v1beta1", "audit.k8s.io/v1alpha1"})
# (deprecated field, where it lives, the MicroTime field it is derived from)
_DERIVED = (("timestamp", None, "requestReceivedTimestamp"),
            ("creationTimestamp", "metadata", "stageTimestamp"))


def _seconds(ns: int) -> str:
    """Go's ``metav1.Time`` JSON: RFC 3339 in UTC, fraction truncated."""
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro(ns: int) -> str:
    """Go's ``metav1.MicroTime`` JSON: RFC 3339 in UTC with exactly six fraction digits."""
    secs, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac // 1000:06d}Z"


def _fold_derived(ev: dict[str, Any], field: str, holder_name: str | None, micro_field: str) -> None:
    """Drop ``field`` when it is exactly what the apiserver derives from ``micro_field``; when the
    MicroTime field is missing, fill it from ``field`` first (the apiserver's v1beta1→v1 rule)."""
    holder = ev if holder_name is None else ev.get(holder_name)
    if not isinstance(holder, dict) or field not in holder:
        return
    old, new = holder[field], ev.get(micro_field)
    if new is None and isinstance(old, str):
        ns = parse_rfc3339_ns(old)
        if ns is None:
            return
        new = ev[micro_field] = _micro(ns)
    if old is None:
        derived = new is None
    else:
        ns = parse_rfc3339_ns(new) if isinstance(new, str) else None
        derived = ns is not None and old == _seconds(ns)
    if not derived:
        return
    if holder_name is None:
        del ev[field]
        return
    rest = {k: v for k, v in holder.items() if k != field}
    if rest:
        ev[holder_name] = rest
    else:
        del ev[holder_name]


def canonical_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event without its envelope and derived fields (a new top-level dict; ``event`` is kept)."""
    ev = event.copy()
    if ev.get("kind") == "Event":
        del ev["kind"]
    if ev.get("apiVersion") in AUDIT_API_VERSIONS:
        del ev["apiVersion"]
    if "timestamp" in ev or "metadata" in ev:  # v1beta1/v1alpha1 only: v1 has neither
        for field, holder, micro in _DERIVED:
            _fold_derived(ev, field, holder, micro)
        if ev.get("metadata") == {}:
            del ev["metadata"]
    return ev


def canonical_bytes(event: dict[str, Any]) -> bytes:
    """Sorted keys (by code point, at every level), no whitespace, UTF-8 (orjson's serialisation)."""
    return orjson.dumps(canonical_event(event), option=orjson.OPT_SORT_KEYS)


def event_key(event: dict[str, Any]) -> str:
    """The record key of a (redacted) audit event: hex SHA-256 of the version tag and canonical bytes
    (``canonical_bytes``, spelled out: this runs for every event)."""
    key = _KEY_PREFIX.copy()
    key.update(orjson.dumps(canonical_event(event), option=orjson.OPT_SORT_KEYS))
    return key.hexdigest()


_KEY_PREFIX = hashlib.sha256(KEY_VERSION)  # copied per key: the tag is hashed once


def legacy_key(body: bytes) -> str:
    """The v1 key kubetrail used before: SHA-256 of the version tag and the stored body bytes."""
    return hashlib.sha256(LEGACY_KEY_VERSION + body).hexdigest()
