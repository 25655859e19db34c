"""The alert: what a detection says, about whom, and which stored records prove it.

An ``Alert`` is built by a rule match (``from_match``), a stateful detector or another part of
kubetrail (the credential inventory raises risk-flag alerts), and recorded with
``kubetrail.alerts.store.record_alert``. Its evidence names trail records by key *and* leaf index,
so an alert can be checked against the tamper-evident trail (``kubetrail trail proof``).

``subject`` is who the alert is about (normally the acting identity; the source IP for anonymous
requests). De-duplication and rate limits are per ``(rule, subject)``; ``dedup_key`` says which
alerts are "the same" (by default the rule, subject and the first evidence's auditID, so the
``ResponseStarted`` and ``ResponseComplete`` stages of one exec make one alert).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

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
    suppressed: int = 0  # later occurrences folded into this alert by the rate limit

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


def from_match(match: Any, record: Any) -> Alert:
    """An alert for one rule match (``kubetrail.detect.engine.Match``) on one stored record."""
    ev = record.event() if hasattr(record, "event") else record
    evidence = [Evidence.of(record)] if hasattr(record, "key") else []
    fields = {k: v for k, v in (match.fields or {}).items() if v is not None}
    return Alert(rule=match.rule, priority=match.priority, time=record.time if hasattr(record, "time") else 0,
                 subject=subject_of(ev), output=match.output, fields=fields, tags=list(match.tags),
                 evidence=evidence, origin="rule")
