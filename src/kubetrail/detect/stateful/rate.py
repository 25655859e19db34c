"""Rate and distinct-count detectors over sliding windows of event time (catalog D03/D05, D43, D57, D73).

Each detector counts *distinct* values per key inside a window (``auditID`` for plain counts, so
the several stages of one request count once; resource type for discovery; secret name for
secret reads). When the count reaches the threshold it raises one alert whose evidence is every
record in the window, then stays quiet for one window (cool-down) before it may fire again.
Windows live in the store like all detector state.
"""

from __future__ import annotations

from typing import Any

from kubetrail.alerts.alert import Alert, Evidence
from kubetrail.alerts.config import StatefulConfig
from kubetrail.detect.stateful.base import is_system, make_alert, source_ip, subject
from kubetrail.detect.stateful.state import StateStore

DISCOVERY_RESOURCES = frozenset({
    "namespaces", "nodes", "pods", "secrets", "configmaps", "serviceaccounts", "roles", "rolebindings",
    "clusterroles", "clusterrolebindings", "deployments", "daemonsets", "services", "persistentvolumes",
})
DESTRUCTIVE_RESOURCES = frozenset({
    "pods", "deployments", "daemonsets", "statefulsets", "replicasets", "namespaces", "services", "jobs",
    "cronjobs", "persistentvolumeclaims", "persistentvolumes", "configmaps", "secrets",
})


class Window:
    """Distinct values per key within ``window_ns``; ``add`` says when the threshold is crossed."""

    def __init__(self, state: StateStore, name: str, threshold: int, window_ns: int) -> None:
        self.state, self.name, self.threshold, self.window_ns = state, name, threshold, window_ns

    def add(self, key: str, value: str, record: Any) -> list[Evidence] | None:
        t = record.time
        st = self.state.get(self.name, key) or {"v": {}, "fired": None}
        vals: dict[str, list[Any]] = st["v"]
        vals[value] = [t, record.key, record.meta.audit_id, record.meta.stage, record.leaf_index]
        low = t - self.window_ns
        vals = {k: v for k, v in vals.items() if v[0] > low}
        if len(vals) > self.threshold * 4:  # keep the newest; enough to fire again
            vals = dict(sorted(vals.items(), key=lambda kv: kv[1][0])[-self.threshold * 4:])
        fired = st["fired"]
        hit = len(vals) >= self.threshold and (fired is None or t - fired >= self.window_ns)
        self.state.put(self.name, key, {"v": vals, "fired": t if hit else fired})
        if not hit:
            return None
        rows = sorted(vals.values(), key=lambda v: (v[0], v[4] if v[4] is not None else -1))
        return [Evidence(key=r[1], audit_id=r[2], stage=r[3], leaf_index=r[4]) for r in rows]


def _ok(record: Any) -> bool:
    return record.meta.code is None or record.meta.code < 400


class DeniedBurst:
    """Many 401/403 answers to one identity or one source IP (scanning, stolen-token probing)."""

    name = "rate.denied"
    rule = "K8s Burst of Denied Requests"
    rules = ((rule, "Warning"),)

    def __init__(self, state: StateStore, config: StatefulConfig) -> None:
        self.window = Window(state, self.name, config.denied_burst, int(config.denied_window_secs * 1e9))
        self.config = config

    def observe(self, record: Any) -> list[Alert]:
        m = record.meta
        if m.code not in (401, 403):
            return []
        out = []
        keys = [("ip", source_ip(record))]
        if m.user and m.user != "system:anonymous":
            keys.append(("user", m.user))
        for kind, who in keys:
            if not who:
                continue
            ev = self.window.add(f"{kind}:{who}", m.audit_id or record.key, record)
            if ev:
                out.append(make_alert(
                    self.rule, "Warning", record, who if kind == "user" else subject(record),
                    f"{len(ev)} denied requests (401/403) from {kind} {who} within "
                    f"{self.config.denied_window_secs:g}s; last: verb={m.verb} uri={m.request_uri} ua={m.user_agent}",
                    ["k8s", "T1613", "T1046", "T1078"], dedup=f"{kind}:{who}:{record.time}", evidence=ev,
                    fields={"by": kind, "count": len(ev)}))
        return out


class DiscoveryBurst:
    """One identity reading or listing many resource types quickly (multi-resource discovery)."""

    name = "rate.discovery"
    verbs, resources = frozenset({"get", "list"}), DISCOVERY_RESOURCES  # dispatch: observe ignores the rest
    rule = "K8s Multi-Resource Discovery Burst"
    rules = ((rule, "Notice"),)

    def __init__(self, state: StateStore, config: StatefulConfig) -> None:
        self.window = Window(state, self.name, config.discovery_kinds, int(config.discovery_window_secs * 1e9))

    def observe(self, record: Any) -> list[Alert]:
        m = record.meta
        if m.verb not in ("get", "list") or m.resource not in DISCOVERY_RESOURCES or m.subresource \
                or not m.user or is_system(m.user):
            return []
        ev = self.window.add(subject(record), m.resource, record)
        if not ev:
            return []
        return [make_alert(self.rule, "Notice", record, subject(record),
                           f"{subject(record)} read {len(ev)} resource types in a short window "
                           f"(last {m.verb} {m.resource}) ua={m.user_agent}",
                           ["k8s", "T1613", "T1069.003"], dedup=str(record.time), evidence=ev)]


class DeleteBurst:
    """Destructive deletes in a burst by one identity (impact: wiping workloads or namespaces)."""

    name = "rate.delete"
    verbs, resources = frozenset({"delete", "deletecollection"}), DESTRUCTIVE_RESOURCES
    rule = "K8s Destructive Delete Burst"
    rules = ((rule, "Critical"),)

    def __init__(self, state: StateStore, config: StatefulConfig) -> None:
        self.window = Window(state, self.name, config.delete_burst, int(config.delete_window_secs * 1e9))

    def observe(self, record: Any) -> list[Alert]:
        m = record.meta
        if m.verb not in ("delete", "deletecollection") or m.resource not in DESTRUCTIVE_RESOURCES \
                or m.subresource or not _ok(record) or not m.user or is_system(m.user):
            return []
        ev = self.window.add(subject(record), m.audit_id or record.key, record)
        if not ev:
            return []
        return [make_alert(self.rule, "Critical", record, subject(record),
                           f"{subject(record)} deleted {len(ev)} objects in a short window "
                           f"(last {m.resource} {m.namespace}/{m.name})",
                           ["k8s", "T1485", "T1489"], dedup=str(record.time), evidence=ev)]


class SecretReadBurst:
    """One identity reading many distinct secrets (Panther: 15 in 30 minutes)."""

    name = "rate.secrets"
    verbs, resources = frozenset({"get"}), frozenset({"secrets"})
    rule = "K8s Many Secrets Read by One Identity"
    rules = ((rule, "Warning"),)

    def __init__(self, state: StateStore, config: StatefulConfig) -> None:
        self.window = Window(state, self.name, config.secrets_read, int(config.secrets_window_secs * 1e9))

    def observe(self, record: Any) -> list[Alert]:
        m = record.meta
        if m.verb != "get" or m.resource != "secrets" or not _ok(record) or not m.user or is_system(m.user):
            return []
        ev = self.window.add(subject(record), f"{m.namespace}/{m.name}", record)
        if not ev:
            return []
        return [make_alert(self.rule, "Warning", record, subject(record),
                           f"{subject(record)} read {len(ev)} distinct secrets in a short window "
                           f"(last {m.namespace}/{m.name}) ua={m.user_agent}",
                           ["k8s", "T1552.007"], dedup=str(record.time), evidence=ev)]
