"""First-seen detectors (catalog D10, D11, D70 "same credential from more than one IP").

For each identity the detector remembers the source IPs and user-agent families it has used, and
for each credential id (``X509SHA256=…``, ``JTI=…``) the IPs it came from. A value not seen before
raises an alert, unless the detector is still **learning**: for ``learning_secs`` of event time
after the first record it ever observed, it only builds the baseline. The start time is stored
with the baseline, so a restart neither resets the baseline nor starts a new learning period.

Control-plane and managed-platform identities are skipped (``base.SYSTEM_IDENTITIES``), and so is
anonymous traffic (the denied-burst detector covers scanners). An identity's very first request
sets its baseline without an alert: a brand-new identity has no "usual" place yet.
"""

from __future__ import annotations

from typing import Any

from kubetrail.alerts.alert import Alert
from kubetrail.alerts.config import StatefulConfig
from kubetrail.detect.stateful.base import is_system, learning, make_alert, source_ip, ua_family
from kubetrail.detect.stateful.state import StateStore

MAX_VALUES = 64  # per identity; beyond this the identity roams and stops alerting
SETTLED_LIMIT = 16384  # requests remembered as changing nothing (``FirstSeen._settled``), then forgotten at once
SETTLED_MEMO = True  # tests turn it off to compare with looking every request up

_CHECKS = (
    # kind, rule, priority, what
    ("ip", "K8s Identity Used From New Source IP", "Notice", "source IP"),
    ("ua", "K8s Identity Used With New User Agent", "Notice", "user agent"),
    ("cred_ip", "K8s Credential Used From Another Source IP", "Warning", "source IP"),
)


class FirstSeen:
    name = "first_seen"
    rules = tuple((rule, priority) for _, rule, priority, _ in _CHECKS)

    def __init__(self, state: StateStore, config: StatefulConfig) -> None:
        self.state = state
        self.learning_ns = int(config.learning_secs * 1e9)
        # (user, source IP, user agent, credential id) of requests that changed nothing: every value was
        # in its baseline already (or the baseline was full, or the value empty). Baselines only grow, so
        # the same request again changes nothing and raises nothing either (most traffic repeats).
        self._settled: set[tuple[str, str, str, str]] = set()

    def learning(self, t: int) -> bool:
        return learning(self.state, self.name, t, self.learning_ns)

    def observe(self, record: Any) -> list[Alert]:
        m = record.meta
        if not m.user or m.user == "system:anonymous" or is_system(m.user) or m.code == 401:
            return []
        ip = source_ip(record)
        settled = (m.user, ip, m.user_agent, m.credential_id)
        if SETTLED_MEMO and settled in self._settled:
            return []
        learning = self.learning(record.time)
        changed = False
        values = {"ip": (m.user, ip), "ua": (m.user, ua_family(m.user_agent) if m.user_agent else ""),
                  "cred_ip": (m.credential_id, ip)}
        out: list[Alert] = []
        for kind, rule, priority, what in _CHECKS:
            who, value = values[kind]
            if not who or not value:
                continue
            key = f"{kind}\x1f{who}"
            seen: list[str] = self.state.get(self.name, key, [])
            if value in seen or len(seen) >= MAX_VALUES:
                continue
            self.state.put(self.name, key, [*seen, value])
            changed = True
            if learning or not seen:
                continue
            label = "credential " + who if kind == "cred_ip" else who
            output = (f"{label} used from a new {what} {value} (seen before: {', '.join(seen[-5:])}) "
                      f"verb={m.verb} resource={m.resource} uri={m.request_uri} ua={m.user_agent}")
            out.append(make_alert(rule, priority, record, m.user, output, ["k8s", "T1078", "T1550.001"],
                                  dedup=f"{kind}:{who}:{value}",
                                  fields={"kind": kind, "value": value, "previous": seen[-5:],
                                          "credential_id": m.credential_id or None}))
        if not changed:
            if len(self._settled) >= SETTLED_LIMIT:
                self._settled.clear()
            self._settled.add(settled)
        return out
