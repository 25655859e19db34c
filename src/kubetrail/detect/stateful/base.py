"""What every stateful detector shares: the record's facts, system-identity allow-lists, alerts.

A detector is a small class with ``observe(record) -> list[Alert]`` (and optionally
``tick(now_ns) -> list[Alert]`` for wall-clock work); its memory lives in a ``StateStore``.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from kubetrail.alerts.alert import Alert, Evidence

# Managed-platform and control-plane identities: their behaviour is machine-regular and would
# drown first-seen, rate and sequence detectors (Elastic's exclusion lists, corpus §2.1).
SYSTEM_IDENTITIES = (
    "system:kube-controller-manager", "system:kube-scheduler", "system:kube-proxy", "system:apiserver",
    "system:node:*", "system:serviceaccount:kube-system:*", "system:serviceaccount:kube-node-lease:*",
    "system:gcp-controller-manager", "system:addon-manager", "system:konnectivity-server",
    "eks:*", "aksService", "masterclient", "nodeclient", "hcpService", "kubelet-bootstrap",
    "kubelet-nodepool-bootstrap", "system:cloud-controller-manager", "system:metrics-server",
)


def is_system(user: str, extra: tuple[str, ...] = ()) -> bool:
    return any(fnmatch.fnmatchcase(user, p) for p in SYSTEM_IDENTITIES + extra)


def source_ip(record: Any) -> str:
    ips = record.meta.source_ips
    return ips[-1] if ips else ""


def ua_family(user_agent: str) -> str:
    """``kubectl/v1.29.1 (linux/amd64) kubernetes/abc`` -> ``kubectl``: versions change, tools rarely."""
    ua = user_agent.strip()
    for sep in ("/", " "):
        ua = ua.split(sep, 1)[0]
    return ua.lower() or "<none>"


def subject(record: Any) -> str:
    user = record.meta.user
    if not user or user == "system:anonymous":
        ip = source_ip(record)
        return f"{user or 'unknown'}@{ip}" if ip else (user or "unknown")
    return user


def make_alert(rule: str, priority: str, record: Any, subject_: str, output: str, tags: list[str],
               dedup: str, fields: dict[str, Any] | None = None, evidence: list[Evidence] | None = None) -> Alert:
    return Alert(rule=rule, priority=priority, time=record.time, subject=subject_, output=output,
                 fields=fields or {}, tags=tags, evidence=evidence if evidence is not None else [Evidence.of(record)],
                 origin="stateful", dedup_key=f"{rule}\x1f{subject_}\x1f{dedup}")
