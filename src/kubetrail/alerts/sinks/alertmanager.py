"""Prometheus Alertmanager, API v2: ``POST {url}/api/v2/alerts`` with an array of alerts.

Labels identify an alert in Alertmanager (it de-duplicates on them), so they hold the rule,
priority, subject and kubetrail's alert id; everything else goes in annotations. ``startsAt`` is
the event time; ``endsAt`` is left out, so Alertmanager resolves the alert after its
``resolve_timeout`` (an audit event has no "end").
"""

from __future__ import annotations

from typing import Any

from kubetrail.alerts.alert import Alert
from kubetrail.alerts.config import AlertmanagerSinkConfig
from kubetrail.alerts.sinks.http import post_json
from kubetrail.timefmt import format_ns


def am_alert(a: Alert, generator_url: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {
        "labels": {"alertname": a.rule, "severity": a.priority.lower(), "subject": a.subject,
                   "source": "kubetrail", "kubetrail_alert_id": str(a.id)},
        "annotations": {"summary": a.output[:1000], "mitre": ",".join(a.mitre), "tags": ",".join(a.tags),
                        "evidence_leaf_indexes": ",".join(str(e.leaf_index) for e in a.evidence[:20]),
                        "evidence_audit_ids": ",".join(e.audit_id for e in a.evidence[:20])},
        "startsAt": format_ns(a.time),
    }
    if generator_url:
        out["generatorURL"] = generator_url
    return out


class AlertmanagerSink:
    def __init__(self, config: AlertmanagerSinkConfig) -> None:
        self.name = config.name
        self.config = config

    def send(self, alerts: list[Alert]) -> None:
        base = self.config.resolved_url().rstrip("/")
        url = base if base.endswith("/api/v2/alerts") else base + "/api/v2/alerts"
        post_json(url, [am_alert(a, self.config.generator_url) for a in alerts], self.config.timeout_secs,
                  self.config.headers())
