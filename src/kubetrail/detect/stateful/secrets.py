"""Secret reads outside an identity's baseline (catalog D58).

For every identity that reads secrets (``get``/``list``/``watch`` on ``secrets``, completed and
allowed) the detector keeps what its secret reads looked like: the source IPs, the user-agent
families and the namespaces. After the learning period (``learning_secs`` of event time after the
detector's first secret read) a secret read raises an alert when

* the identity has never read a secret before (a new reader: Warning),
* it comes from a new source IP or a new user-agent family for this identity's secret reads
  (Warning), or
* only the namespace is new for this identity (Notice).

This is secret-specific: the general first-seen detectors know an identity's IPs and agents over
all its requests, so an identity that lists pods from a laptop every day and then reads secrets
from it for the first time is only seen here. Control-plane and managed identities are skipped
(``base.SYSTEM_IDENTITIES``: nodes read their pods' secrets all the time), as is anonymous traffic
(the anonymous rules cover it). Each list keeps at most ``MAX_VALUES`` values; an identity that
roams further stops alerting for that kind.
"""

from __future__ import annotations

from typing import Any

from kubetrail.alerts.alert import Alert
from kubetrail.alerts.config import StatefulConfig
from kubetrail.detect.stateful.base import done_ok, is_system, learning, make_alert, source_ip, ua_family
from kubetrail.detect.stateful.state import StateStore

MAX_VALUES = 64
READS = frozenset({"get", "list", "watch"})
_WHAT = {"ip": "source IP", "ua": "user agent", "ns": "namespace"}


class SecretReadBaseline:
    name = "secrets_baseline"
    verbs, resources = READS, frozenset({"secrets"})  # dispatch: observe ignores the rest
    rule = "K8s Secret Read Outside Identity Baseline"
    rules = ((rule, "Warning"),)

    def __init__(self, state: StateStore, config: StatefulConfig) -> None:
        self.state = state
        self.learning_ns = int(config.learning_secs * 1e9)

    def observe(self, record: Any) -> list[Alert]:
        m = record.meta
        if (m.resource != "secrets" or m.verb not in READS or m.subresource or not m.user
                or m.user == "system:anonymous" or not done_ok(record) or is_system(m.user)):
            return []
        quiet = learning(self.state, self.name, record.time, self.learning_ns)
        values = {"ip": source_ip(record), "ua": ua_family(m.user_agent) if m.user_agent else "",
                  "ns": m.namespace or "*"}
        doc: dict[str, list[str]] | None = self.state.get(self.name, m.user)
        first = doc is None
        doc = {k: list(v) for k, v in (doc or {}).items()}
        new: dict[str, str] = {}
        for kind, value in values.items():
            seen = doc.setdefault(kind, [])
            if value and value not in seen and len(seen) < MAX_VALUES:
                seen.append(value)
                if not first:
                    new[kind] = value
        if first or new:
            self.state.put(self.name, m.user, doc)
        if quiet or not (first or new):
            return []
        target = f"{m.namespace}/{m.name}" if m.name else f"{m.verb} in {m.namespace or 'all namespaces'}"
        if first:
            why = "first secret read by this identity"
        else:
            why = "; ".join(f"new {_WHAT[k]} {v}" for k, v in new.items())
        priority = "Notice" if set(new) == {"ns"} else "Warning"
        return [make_alert(self.rule, priority, record, m.user,
                           f"{m.user} read secrets ({m.verb} {target}) outside its baseline: {why} "
                           f"ip={values['ip']} ua={m.user_agent}", ["k8s", "T1552.007"],
                           dedup="first" if first else ",".join(f"{k}={v}" for k, v in sorted(new.items())),
                           fields={"new_reader": first, "new": new, "source_ip": values["ip"],
                                   "namespace": m.namespace, "secret": m.name})]
