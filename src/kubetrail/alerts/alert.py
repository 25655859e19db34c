"""The alert: what a detection says, about whom, and which stored records prove it.

An ``Alert`` is built by a rule match (``from_match``), a stateful detector or another part of
kubetrail (the credential inventory raises risk-flag alerts), and recorded with
``kubetrail.alerts.store.record_alert``. Its evidence names trail records by key *and* leaf index,
so an alert can be checked against the tamper-evident trail (``kubetrail trail proof``).

``subject`` is who the alert is about (normally the acting identity; the source IP for anonymous
requests). ``dedup_key`` says which alerts are "the same" (by default the rule, subject and the first
evidence's auditID, so the ``ResponseStarted`` and ``ResponseComplete`` stages of one exec make one
alert). Rule matches are aggregated further (``alerts/route.py``): one alert per rule, group-by
values (``group``: subject, credential, source IP …) and event-time window, whose ``time`` is the
first occurrence, ``last_seen`` the latest and ``count`` the number of requests folded into it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from kubetrail.stages.redact import scrub_text

# Falco's priority names, most severe first; the index is the level (0 = Emergency … 7 = Debug).
PRIORITIES = ("Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug")
_MITRE = re.compile(r"^(?:mitre_[a-z_]+|T\d{4}(?:\.\d{3})?)$", re.IGNORECASE)


def priority_level(name: str) -> int:
    """0 (Emergency) … 7 (Debug); accepts any case and ``Info``; unknown names count as Warning."""
    low = name.strip().lower()
    if low == "info":
        low = "informational"
    for i, p in enumerate(PRIORITIES):
        if p.lower() == low:
            return i
    return 4


def priority_name(name: str) -> str:
    return PRIORITIES[priority_level(name)]


@dataclass(frozen=True)
class Evidence:
    """One stored record an alert rests on."""

    key: str
    audit_id: str = ""
    stage: str = ""
    leaf_index: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "auditID": self.audit_id, "stage": self.stage, "leaf_index": self.leaf_index}

    @classmethod
    def of(cls, record: Any) -> Evidence:
        """Evidence for a ``kubetrail.record.Record``."""
        return cls(key=record.key, audit_id=record.meta.audit_id, stage=record.meta.stage,
                   leaf_index=record.leaf_index)


@dataclass
class Alert:
    rule: str
    priority: str
    time: int  # event time of the (first) evidence, ns since the epoch
    subject: str
    output: str
    fields: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    origin: str = "rule"  # rule | stateful | credentials | …
    dedup_key: str = ""
    id: int | None = None
    suppressed: int = 0  # later occurrences folded into this alert (aggregation or rate limit)
    last_seen: int = 0  # event time of the latest occurrence (0: only one, at ``time``)
    count: int = 1  # requests folded into this alert (the first included)
    group: dict[str, str] = field(default_factory=dict)  # values aggregation can group by (not stored)

    def __post_init__(self) -> None:
        self.priority = priority_name(self.priority)
        # Output and fields are rendered from stored values, and rendering may decode what the store
        # kept encoded (``%ka.uri.param[command]`` percent-decodes the request URI, ``b64()`` decodes
        # base64; those fields scrub their decoded value themselves): whatever the text rules of
        # redaction find is removed again, so no sink ever receives more than the store holds. The
        # name=value rule is left out here: ``secret=%ka.target.name`` names a Secret.
        self.output = scrub_text(self.output, pairs=False)
        self.subject = scrub_text(self.subject, pairs=False)
        self.fields = {k: _scrubbed(v) for k, v in self.fields.items()}
        if not self.dedup_key:
            first = self.evidence[0].audit_id or self.evidence[0].key if self.evidence else str(self.time)
            self.dedup_key = f"{self.rule}\x1f{self.subject}\x1f{first}"

    @property
    def priority_level(self) -> int:
        return priority_level(self.priority)

    @property
    def mitre(self) -> list[str]:
        """The MITRE ATT&CK tags (technique IDs such as ``T1609`` and Falco's ``mitre_*`` tactics)."""
        return [t for t in self.tags if _MITRE.match(t)]

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape (`kubetrail alerts --json`, webhook bodies): add keys, never rename."""
        from kubetrail.timefmt import format_ns

        return {
            "id": self.id,
            "rule": self.rule,
            "priority": self.priority,
            "time": format_ns(self.time),
            "time_ns": self.time,
            "subject": self.subject,
            "output": self.output,
            "tags": list(self.tags),
            "mitre": self.mitre,
            "origin": self.origin,
            "fields": self.fields,
            "suppressed": self.suppressed,
            "first_seen": format_ns(self.time),
            "last_seen": format_ns(self.last_seen or self.time),
            "count": self.count,
            "evidence": [e.to_json() for e in self.evidence],
        }


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value, pairs=False)
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    return value


def subject_of(event: dict[str, Any]) -> str:
    """Who an event is about: the user, or the trusted source IP when the caller is anonymous."""
    user = event.get("user") if isinstance(event.get("user"), dict) else {}
    name = user.get("username") if isinstance(user.get("username"), str) else ""
    if not name or name == "system:anonymous":
        ips = event.get("sourceIPs")
        ip = ips[-1] if isinstance(ips, list) and ips and isinstance(ips[-1], str) else ""
        return f"{name or 'unknown'}@{ip}" if ip else (name or "unknown")
    return name


LEGACY_TOKEN = "authentication.k8s.io/legacy-token"
_LEGACY_SECRET = ("authentication.k8s.io/legacy-token-autogenerated-secret",
                  "authentication.k8s.io/legacy-token-manual-secret")


def credential_of(event: dict[str, Any], credential_id: str = "") -> str:
    """Which credential made a request, as far as the event says: the ``credential-id`` (``JTI=…``,
    ``X509SHA256=…``), else the legacy token (``legacy:<service account>[/<secret>]``), else ''."""
    if credential_id:
        return credential_id
    ann = event.get("annotations")
    if not isinstance(ann, dict) or not isinstance(ann.get(LEGACY_TOKEN), str):
        return ""
    secret = next((ann[k] for k in _LEGACY_SECRET if isinstance(ann.get(k), str) and ann[k]), "")
    return f"legacy:{ann[LEGACY_TOKEN]}" + (f"/{secret}" if secret else "")


def group_values(event: dict[str, Any], meta: Any, subject: str) -> dict[str, str]:
    """The values aggregation can group an alert by (``suppress.by`` in detect.yaml)."""
    if meta is None:
        ref = event.get("objectRef") if isinstance(event.get("objectRef"), dict) else {}
        ips = event.get("sourceIPs") if isinstance(event.get("sourceIPs"), list) else []
        return {"subject": subject, "credential": credential_of(event), "source_ip": str(ips[-1]) if ips else "",
                "user_agent": str(event.get("userAgent") or ""), "namespace": str(ref.get("namespace") or ""),
                "name": str(ref.get("name") or ""), "resource": str(ref.get("resource") or ""),
                "verb": str(event.get("verb") or "")}
    return {"subject": subject, "credential": credential_of(event, meta.credential_id),
            "source_ip": meta.source_ips[-1] if meta.source_ips else "", "user_agent": meta.user_agent,
            "namespace": meta.namespace, "name": meta.name, "resource": meta.resource, "verb": meta.verb}


class _Who(msgspec.Struct):
    """The only fields of an event ``from_match`` reads (``subject_of``, ``credential_of``), as parsed."""

    user: Any = None
    sourceIPs: Any = None
    annotations: Any = None


_who_decoder = msgspec.json.Decoder(_Who)
FAST_WHO = True  # tests turn it off to compare with the parsed event every time


def _who(record: Any) -> dict[str, Any]:
    """The event as far as ``from_match`` reads it. A record prepared by a worker process carries no
    parsed event (only its body crossed over): those three fields are decoded from the body rather
    than parsing the whole event (~4x the cost, for each rule match in the writer). The values are
    the ones the parse gives (each read through an ``isinstance`` check, so even an integer beyond 64
    bits, a float to orjson, reads alike); a body the decoding refuses is parsed."""
    cached = record.__dict__.get("_event") if FAST_WHO and hasattr(record, "__dict__") else None
    if cached is not None or not FAST_WHO or not isinstance(getattr(record, "body", None), bytes):
        return cached if cached is not None else record.event()  # type: ignore[no-any-return]
    try:
        who = _who_decoder.decode(record.body)
    except msgspec.MsgspecError:
        return record.event()  # type: ignore[no-any-return]
    return {"user": who.user, "sourceIPs": who.sourceIPs, "annotations": who.annotations}


def from_match(match: Any, record: Any) -> Alert:
    """An alert for one rule match (``kubetrail.detect.engine.Match``) on one stored record."""
    ev = _who(record) if hasattr(record, "event") else record
    evidence = [Evidence.of(record)] if hasattr(record, "key") else []
    fields = {k: v for k, v in (match.fields or {}).items() if v is not None}
    subject = subject_of(ev)
    return Alert(rule=match.rule, priority=match.priority, time=record.time if hasattr(record, "time") else 0,
                 subject=subject, output=match.output, fields=fields, tags=list(match.tags),
                 evidence=evidence, origin="rule", group=group_values(ev, getattr(record, "meta", None), subject))
