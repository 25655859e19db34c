"""Aggregation, de-duplication and rate limits, decided inside the store transaction.

* **Aggregation** (Elastic-style suppression, ``suppress:`` in detect.yaml): a rule match is about
  a request; what a responder must look at is the identity or credential behind it. Matches of one
  rule (and priority) with the same group-by values (``subject`` by default; ``credential`` for the
  legacy and stale token rules) in one event-time window (``window_secs``, default a day, aligned
  to the epoch) are one alert: the first stores it and is delivered, later ones fold into it.
  Stateful and credential alerts keep their own ``dedup_key`` unless ``suppress.rules`` names them.
* **Duplicate**: an alert whose ``dedup_key`` is already stored (another stage of the same request,
  records re-read after a restart) folds into the stored alert.
* **Rate limit**: at most ``max_alerts`` alerts per ``(rule, subject)`` in ``window_secs`` of event
  time among alerts that are not aggregated; more fold into the newest of that pair.

A fold never loses anything: every occurrence's evidence is kept in ``alert_events``, the alert's
``count`` counts distinct requests, ``time``/``last_seen`` are the earliest and latest event times,
and the alert's output describes its earliest occurrence. All of these depend only on the set of
occurrences, never on the order they arrived in (window buckets are fixed, not "from the first").

Event time, not wall time, so a backfill (``kubetrail detect --since 30d``) behaves like live.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from kubetrail.alerts.alert import Alert
from kubetrail.alerts.config import DetectSettings, SuppressConfig
from kubetrail.store.api import AlertsRepo

MAX_EVIDENCE = 100  # evidence records kept per occurrence
FIRST_EVIDENCE = 5  # occurrences shown as an alert's evidence: the first five by event time, and the latest


@dataclass(frozen=True)
class Decision:
    """``new`` → insert; otherwise ``fold_into`` names the stored alert that absorbs this one."""

    new: bool
    fold_into: int | None = None
    reason: str = ""  # aggregated | duplicate | rate_limited


def _value(alert: Alert, name: str) -> str:
    if name == "subject":
        return alert.subject
    if name.startswith("fields."):
        value = alert.fields.get(name[7:])
        return value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    value = alert.group.get(name, "")
    if name == "credential" and not value:  # no credential in the event: the identity stands for it
        value = f"subject:{alert.subject}"
    return value


def group_key(alert: Alert, suppress: SuppressConfig) -> str:
    """The aggregation key of an alert, or '' when it is not aggregated."""
    if alert.origin != "rule" and alert.rule not in suppress.rules:
        return ""
    by, window = suppress.for_rule(alert.rule)
    if window <= 0:
        return ""
    bucket = alert.time // int(window * 1e9)
    values = [f"{name}={_value(alert, name)}" for name in by]
    return "\x1f".join(["agg", alert.rule, alert.priority, *values, f"w{int(window)}:{bucket}"])


def occurrence_of(alert: Alert) -> str:
    """The request an alert occurrence is about (its stages and repeated deliveries are one)."""
    if alert.evidence:
        first = alert.evidence[0]
        return first.audit_id or first.key
    return alert.dedup_key


def decide(alerts: AlertsRepo, alert: Alert, settings: DetectSettings) -> Decision:
    key = group_key(alert, settings.suppress)
    if key:
        alert.dedup_key = key
    found = alerts.find_dedup(alert.dedup_key)
    if found is not None:
        return Decision(False, found, "aggregated" if key else "duplicate")
    limit = settings.rate_limit
    if key or limit.max_alerts <= 0:
        return Decision(True)
    window_ns = int(limit.window_secs * 1e9)
    n, newest = alerts.window(alert.rule, alert.subject, alert.time - window_ns, alert.time)
    if n >= limit.max_alerts and newest is not None:
        return Decision(False, newest, "rate_limited")
    return Decision(True)
