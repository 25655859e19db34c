"""What every stateful detector shares: the record's facts, system-identity allow-lists, alerts.

A detector is a small class with ``observe(record) -> list[Alert]`` (and optionally
``tick(now_ns) -> list[Alert]`` for wall-clock work); its memory lives in a ``StateStore``.
"""

from __future__ import annotations

import fnmatch
from functools import lru_cache
from typing import Any

from kubetrail.alerts.alert import Alert, Evidence, group_values

# Managed-platform and control-plane identities: their behaviour is machine-regular and would
# drown first-seen, rate and sequence detectors (Elastic's exclusion lists, corpus §2.1).
SYSTEM_IDENTITIES = (
    "system:kube-controller-manager", "system:kube-scheduler", "system:kube-proxy", "system:apiserver",
    "system:node:*", "system:serviceaccount:kube-system:*", "system:serviceaccount:kube-node-lease:*",
    "system:gcp-controller-manager", "system:addon-manager", "system:konnectivity-server",
    "eks:*", "aksService", "masterclient", "nodeclient", "hcpService", "kubelet-bootstrap",
    "kubelet-nodepool-bootstrap", "system:cloud-controller-manager", "system:metrics-server",
)


@lru_cache(maxsize=8192)
def is_system(user: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether ``user`` is a control-plane or node identity (a pure function of its arguments: cached,
    since a cluster's few hundred identities make most of its requests)."""
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
                 origin="stateful", dedup_key=f"{rule}\x1f{subject_}\x1f{dedup}",
                 group=group_values(record.event() if hasattr(record, "event") else {}, getattr(record, "meta", None),
                                    subject_))


def done_ok(record: Any) -> bool:
    """A completed, successful request (``ResponseComplete``, or no stage where the format drops it)."""
    m = record.meta
    return m.stage in ("ResponseComplete", "") and (m.code is None or m.code < 400)


def learning(state: Any, detector: str, t: int, learning_ns: int) -> bool:
    """True while ``detector`` is in its learning period: ``learning_ns`` of event time after the first
    record it ever observed. The start is kept in the store, so a restart never starts a new period."""
    started = state.get(detector, "_started")
    if started is None:
        state.put(detector, "_started", t)
        started = t
    return t < int(started) + learning_ns


def ev_row(record: Any) -> list[Any]:
    """A record as stored evidence: [time, key, auditID, stage, leaf_index]."""
    return [record.time, record.key, record.meta.audit_id, record.meta.stage, record.leaf_index]


def evidence(rows: list[list[Any]]) -> list[Evidence]:
    return [Evidence(key=r[1], audit_id=r[2], stage=r[3], leaf_index=r[4]) for r in rows]


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def objects(record: Any) -> list[dict[str, Any]]:
    """The request and response objects of a record's event (what Request/RequestResponse levels keep)."""
    ev = record.event()
    return [o for o in (as_dict(ev.get("requestObject")), as_dict(ev.get("responseObject"))) if o]
