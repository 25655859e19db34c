"""Ordered sequences by one identity (catalog D68 CSR self-approval, D53 RBAC change then workload).

Only completed requests count (stage ``ResponseComplete``, or no stage where the delivery format
drops it) and only successful ones. The first step is remembered in the store with its record;
the second step by the same identity within ``sequence_window_secs`` raises an alert whose
evidence is both records.
"""

from __future__ import annotations

from typing import Any

from kubetrail.alerts.alert import Alert, Evidence
from kubetrail.alerts.config import StatefulConfig
from kubetrail.detect.stateful.base import is_system, make_alert, subject
from kubetrail.detect.stateful.state import StateStore

RBAC = frozenset({"roles", "clusterroles", "rolebindings", "clusterrolebindings"})
WORKLOADS = frozenset({"pods", "deployments", "daemonsets", "statefulsets", "replicasets", "jobs", "cronjobs"})
WRITES = frozenset({"create", "update", "patch"})


def _done(record: Any) -> bool:
    m = record.meta
    return m.stage in ("ResponseComplete", "") and (m.code is None or m.code < 400)


def _ev(record: Any) -> list[Any]:
    return [record.time, record.key, record.meta.audit_id, record.meta.stage, record.leaf_index]


def _evidence(rows: list[list[Any]]) -> list[Evidence]:
    return [Evidence(key=r[1], audit_id=r[2], stage=r[3], leaf_index=r[4]) for r in rows]


def _csr_name(record: Any) -> str:
    if record.meta.name:
        return str(record.meta.name)
    resp = record.event().get("responseObject")
    meta = resp.get("metadata") if isinstance(resp, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else ""


class CsrSelfApproval:
    """A CSR created and then approved by the same identity: a self-issued client certificate."""

    name = "sequence.csr"
    verbs, resources = None, frozenset({"certificatesigningrequests"})  # dispatch: observe ignores the rest
    rule = "K8s CSR Created and Approved by the Same Identity"
    rules = ((rule, "Critical"),)

    def __init__(self, state: StateStore, config: StatefulConfig) -> None:
        self.state = state
        self.window_ns = int(config.sequence_window_secs * 1e9)

    def observe(self, record: Any) -> list[Alert]:
        m = record.meta
        if m.resource != "certificatesigningrequests" or not _done(record) or not m.user:
            return []
        if m.verb == "create" and not m.subresource:
            name = _csr_name(record)
            if name:
                self.state.put(self.name, name, {"user": m.user, "ev": _ev(record)})
            return []
        if m.subresource != "approval" or m.verb not in ("update", "patch") or not m.name:
            return []
        first = self.state.get(self.name, m.name)
        if not first or first["user"] != m.user or record.time - first["ev"][0] > self.window_ns:
            return []
        self.state.put(self.name, m.name, {})  # fire once per CSR
        return [make_alert(self.rule, "Critical", record, subject(record),
                           f"{m.user} created CSR {m.name} and approved it themselves",
                           ["k8s", "T1649", "T1098.006"], dedup=m.name,
                           evidence=_evidence([first["ev"], _ev(record)]), fields={"csr": m.name})]


class RbacThenWorkload:
    """An RBAC change followed by a workload change from the same (non-system) identity."""

    name = "sequence.rbac_workload"
    verbs, resources = WRITES, RBAC | WORKLOADS  # dispatch: observe ignores the rest
    rule = "K8s RBAC Change Followed by Workload Change"
    rules = ((rule, "Warning"),)

    def __init__(self, state: StateStore, config: StatefulConfig) -> None:
        self.state = state
        self.window_ns = int(config.sequence_window_secs * 1e9)

    def observe(self, record: Any) -> list[Alert]:
        m = record.meta
        if m.verb not in WRITES or not _done(record) or not m.user or is_system(m.user):
            return []
        if m.resource in RBAC:
            self.state.put(self.name, m.user, {"ev": _ev(record), "what": f"{m.verb} {m.resource} {m.name}"})
            return []
        if m.resource not in WORKLOADS or m.subresource:
            return []
        first = self.state.get(self.name, m.user)
        if not first or record.time - first["ev"][0] > self.window_ns:
            return []
        self.state.put(self.name, m.user, {})
        return [make_alert(self.rule, "Warning", record, subject(record),
                           f"{m.user} changed RBAC ({first['what']}) then {m.verb} {m.resource} "
                           f"{m.namespace}/{m.name} within {self.window_ns // 10**9}s",
                           ["k8s", "T1098.006"], dedup=str(first["ev"][0]),
                           evidence=_evidence([first["ev"], _ev(record)]))]
