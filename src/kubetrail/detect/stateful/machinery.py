"""The cluster's own machinery used out of its profile: a control-plane, controller or node
credential used with another tool or from an address its component never uses (issue 15).

Rules leave the machinery alone when it does what it does (``detect/rules/01-machinery.yaml``); a
stolen credential of a controller, the scheduler, the apiserver's loopback client or a kubelet
keeps the identity but not the rest of the profile. This detector judges what rules cannot: the
**user agent** (a controller's token sent by curl, kubectl or a script instead of
kube-controller-manager) and the **source address**:

* kube-apiserver's loopback client only ever comes from 127.0.0.1/::1;
* kube-controller-manager, kube-scheduler and the controllers' service accounts connect from the
  control-plane nodes: their addresses are learned together (leader election makes every
  control-plane node talk) during ``learning_secs`` and loopback is always theirs; after that a new
  address is an alert;
* each kubelet keeps to its node's addresses: the first address a node is seen with is its own
  (also for nodes that join later), a different one later is an alert.

Public addresses are left to the rule *System Identity From Public IP*; pod-based add-ons
(kube-proxy, CoreDNS) are judged by user agent only (their pods move). Managed platforms'
identities (``eks:*`` …) are not judged here: their user agents and addresses are not documented.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from kubetrail.alerts.alert import Alert
from kubetrail.alerts.config import StatefulConfig
from kubetrail.detect.stateful.base import learning, make_alert, source_ip
from kubetrail.detect.stateful.state import StateStore

# kube-controller-manager's (and cloud-controller-manager's) controllers; the same names as the
# list kt_kcm_controllers in detect/rules/01-machinery.yaml (a test keeps them equal).
CONTROLLERS = frozenset((
    "attachdetach-controller", "bootstrap-signer", "certificate-controller", "clusterrole-aggregation-controller",
    "cronjob-controller", "daemon-set-controller", "deployment-controller", "disruption-controller",
    "endpoint-controller", "endpointslice-controller", "endpointslicemirroring-controller",
    "ephemeral-volume-controller", "expand-controller", "generic-garbage-collector", "horizontal-pod-autoscaler",
    "job-controller", "legacy-service-account-token-cleaner", "namespace-controller", "node-controller",
    "persistent-volume-binder", "pod-garbage-collector", "pv-protection-controller", "pvc-protection-controller",
    "replicaset-controller", "replication-controller", "resourcequota-controller", "root-ca-cert-publisher",
    "service-account-controller", "service-cidrs-controller", "service-controller", "statefulset-controller",
    "token-cleaner", "ttl-after-finished-controller", "ttl-controller", "validatingadmissionpolicy-status-controller",
    "resource-claim-controller", "selinux-warning-controller", "cloud-node-controller",
    "cloud-node-lifecycle-controller", "route-controller"))
KCM_AGENTS = ("kube-controller-manager/", "cloud-controller-manager/")
MAX_POOL = 64
LOOPBACK = frozenset({"127.0.0.1", "::1"})
SETTLED_LIMIT = 8192  # remembered in-profile (user, user agent, address) triples


def component(user: str, groups: list[str]) -> tuple[str, tuple[str, ...], str] | None:
    """(component, the user agents it sends, where its addresses are kept) for a machinery identity,
    or None. Where: ``loopback``, ``control-plane``, ``node:NAME`` or '' (not judged by address)."""
    if user == "system:kube-controller-manager":
        return "kube-controller-manager", KCM_AGENTS, "control-plane"
    if user == "system:kube-scheduler":
        return "kube-scheduler", ("kube-scheduler/",), "control-plane"
    if user == "system:apiserver":
        return "kube-apiserver", ("kube-apiserver/",), "loopback"
    if user.startswith("system:serviceaccount:kube-system:"):
        name = user[len("system:serviceaccount:kube-system:"):]
        if name in CONTROLLERS:
            return f"kube-controller-manager ({name})", KCM_AGENTS, "control-plane"
        if name == "kube-proxy":
            return "kube-proxy", ("kube-proxy/",), ""
        if name == "coredns":
            return "CoreDNS", ("coredns/",), ""
    if user == "system:kube-proxy":
        return "kube-proxy", ("kube-proxy/",), ""
    if user.startswith("system:node:") and "system:nodes" in groups:
        return "kubelet", ("kubelet/",), f"node:{user[len('system:node:'):]}"
    return None


@functools.lru_cache(maxsize=4096)
def _public(ip: str) -> bool:
    """Pure, and asked for most machinery requests (a cluster has few addresses): cached."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return a.is_global


class MachineryProfile:
    name = "machinery"
    rule = "K8s Control-Plane Credential Used Out of Profile"
    rules = ((rule, "Warning"),)

    def __init__(self, state: StateStore, config: StatefulConfig) -> None:
        self.state = state
        self.learning_ns = int(config.learning_secs * 1e9)
        # (user, user agent, source IP) judged in profile with the address already in its pool, or a
        # user that is no component whatever its groups: the same triple is quiet for good (a pool only
        # grows and nothing else writes it; a kubelet name without the system:nodes group is no
        # component, so quiet too), so it is not judged again
        self._settled: set[tuple[str, str, str]] = set()

    def observe(self, record: Any) -> list[Alert]:
        m = record.meta
        user = m.user
        if not user or m.code == 401 or user[0] not in "s":  # every machinery identity starts with "system:"
            return []
        ua = m.user_agent
        ip = source_ip(record)
        seen = (user, ua, ip)
        if seen in self._settled:
            return []
        found = component(user, m.groups)
        if found is None:
            if not user.startswith("system:node:"):  # no component whatever the groups
                self._settle(seen)
            return []
        what, agents, where = found
        out: list[Alert] = []
        if not ua.startswith(agents):
            out.append(self._alert(record, what, f"user agent {ua or '(none)'} instead of {agents[0].rstrip('/')}",
                                   f"ua:{ua.split('/', 1)[0]}", {"user_agent": ua, "expected": list(agents)}))
        settled = not out
        if where and ip and not _public(ip) and ip not in LOOPBACK:
            settled = settled and where != "loopback" and ip in self.state.get(self.name, f"pool\x1f{where}", [])
            why = self._address(record, where, ip)
            if why:
                out.append(self._alert(record, what, why, f"ip:{ip}", {"source_ip": ip, "pool": where}))
        if settled:
            self._settle(seen)
        return out

    def _settle(self, seen: tuple[str, str, str]) -> None:
        if len(self._settled) >= SETTLED_LIMIT:
            self._settled.clear()
        self._settled.add(seen)

    def _address(self, record: Any, where: str, ip: str) -> str:
        if where == "loopback":
            return f"source {ip}: the apiserver's loopback client only ever connects from the apiserver itself"
        pool: list[str] = self.state.get(self.name, f"pool\x1f{where}", [])
        if ip in pool:
            return ""
        first_of_node = where.startswith("node:") and not pool
        if first_of_node or learning(self.state, self.name, record.time, self.learning_ns):
            if len(pool) < MAX_POOL:
                self.state.put(self.name, f"pool\x1f{where}", [*pool, ip])
            return ""
        seen = ", ".join(pool[-5:]) or "none"
        return (f"source {ip}, not an address this component uses "
                f"({'the control-plane nodes' if where == 'control-plane' else 'its node'}: {seen})")

    def _alert(self, record: Any, what: str, why: str, dedup: str, fields: dict[str, Any]) -> Alert:
        m = record.meta
        return make_alert(self.rule, "Warning", record, m.user,
                          f"{m.user}, the credential of {what}, used out of its profile: {why} "
                          f"(verb={m.verb} resource={m.resource} ns={m.namespace} name={m.name} uri={m.request_uri})",
                          ["k8s", "T1078", "T1528", "T1550.001"], dedup=dedup,
                          fields={"component": what, **fields, "credential_id": m.credential_id or None})
