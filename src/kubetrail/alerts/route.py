"""De-duplication and rate limits per rule and subject, decided inside the store transaction.

* **Duplicate**: an alert whose ``dedup_key`` is already stored (the same rule and subject on the
  same request, e.g. another stage of it, or records re-read after a restart) adds its evidence to
  the stored alert and is not delivered again.
* **Rate limit**: at most ``max_alerts`` alerts per ``(rule, subject)`` in ``window_secs`` of *event*
  time. Further occurrences are folded into the newest alert of that pair (``suppressed`` + 1,
  evidence kept up to ``MAX_EVIDENCE``), so nothing is lost, but nobody is paged a thousand times.

Event time, not wall time, so a backfill (``kubetrail detect --since 30d``) behaves like live.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubetrail.alerts.alert import Alert
from kubetrail.alerts.config import RateLimit
from kubetrail.store.api import AlertsRepo

MAX_EVIDENCE = 100


@dataclass(frozen=True)
class Decision:
    """``new`` → insert; otherwise ``fold_into`` names the stored alert that absorbs this one."""

    new: bool
    fold_into: int | None = None
    reason: str = ""  # duplicate | rate_limited


def decide(alerts: AlertsRepo, alert: Alert, limit: RateLimit) -> Decision:
    found = alerts.find_dedup(alert.dedup_key)
    if found is not None:
        return Decision(False, found, "duplicate")
    if limit.max_alerts <= 0:
        return Decision(True)
    window_ns = int(limit.window_secs * 1e9)
    n, newest = alerts.window(alert.rule, alert.subject, alert.time - window_ns, alert.time)
    if n >= limit.max_alerts and newest is not None:
        return Decision(False, newest, "rate_limited")
    return Decision(True)
