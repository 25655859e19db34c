"""The demo cluster's cast: nodes, control-plane components, service accounts, pods and people.

A kubeadm-style cluster ``demo`` (Kubernetes v1.33) with one control-plane node and three workers.
Control-plane components and kubelets authenticate with client certificates (credential id
``X509SHA256=…``); workloads with pod-bound service-account tokens (``JTI=…`` plus the pod and
node in ``user.extra``), which their kubelet refreshes with TokenRequests while the log runs;
kube-controller-manager runs its controllers under their own service accounts
(``--use-service-account-credentials``); people come through OIDC from the office network.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

from kubetrail.demo.model import Identity

VERSION = "v1.33.2"
COMMIT = "a57b6f7"
CP_IP = "10.0.0.10"
KUBECTL_LINUX = "kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0"
KUBECTL_MAC = "kubectl/v1.33.1 (darwin/arm64) kubernetes/8adc0f0"
KUBECTL_OLD = "kubectl/v1.32.4 (linux/amd64) kubernetes/59526cd"
SA_GROUPS = "system:serviceaccounts"
EXTRA = "authentication.kubernetes.io/"


def k8s_ua(component: str, suffix: str = "") -> str:
    ua = f"{component}/{VERSION} (linux/amd64) kubernetes/{COMMIT}"
    return f"{ua}/{suffix}" if suffix else ua


def sa_groups(namespace: str) -> list[str]:
    return [SA_GROUPS, f"{SA_GROUPS}:{namespace}", "system:authenticated"]


def hexid(rng: random.Random, nbytes: int = 32) -> str:
    return rng.randbytes(nbytes).hex()


def suffix(rng: random.Random, n: int = 5) -> str:
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


@dataclass
class Node:
    name: str
    ip: str
    uid: str
    kubelet: Identity
    renewed: list[tuple[float, Identity]] = field(default_factory=list)  # (from, identity with new cert)

    def kubelet_at(self, t: float) -> Identity:
        """The kubelet's identity at ``t``: its client certificate changes when it rotates."""
        current = self.kubelet
        for start, ident in self.renewed:
            if start <= t:
                current = ident
        return current


@dataclass
class PodAccount:
    """A pod running as a service account with a projected, kubelet-refreshed token."""

    namespace: str
    sa: str
    sa_uid: str
    pod: str
    pod_uid: str
    node: Node
    ip: str
    ua: str
    reason: str
    tokens: list[tuple[float, str]] = field(default_factory=list)  # (valid from, jti), in time order

    def identity(self, t: float) -> Identity:
        """Who the pod is at time ``t``: the newest token its client has loaded by then."""
        jti = self.tokens[0][1]
        for start, value in self.tokens:
            if start <= t:
                jti = value
        extra = {f"{EXTRA}credential-id": [f"JTI={jti}"], f"{EXTRA}node-name": [self.node.name],
                 f"{EXTRA}node-uid": [self.node.uid], f"{EXTRA}pod-name": [self.pod],
                 f"{EXTRA}pod-uid": [self.pod_uid]}
        return Identity(f"system:serviceaccount:{self.namespace}:{self.sa}", sa_groups(self.namespace),
                        self.ip, self.ua, uid=self.sa_uid, extra=extra, reason=self.reason)


def _rbac(kind: str, binding: str, role: str, subject: str) -> str:
    return f'RBAC: allowed by {kind} "{binding}" of ClusterRole "{role}" to {subject}'


class Cluster:
    """Everyone who talks to the apiserver in the demo, built from one seeded RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.nodes = [self._node(name, ip) for name, ip in (
            ("demo-control-plane", CP_IP), ("demo-worker-1", "10.0.0.11"),
            ("demo-worker-2", "10.0.0.12"), ("demo-worker-3", "10.0.0.13"))]
        self.apiserver = Identity("system:apiserver", ["system:masters", "system:authenticated"], "::1",
                                  k8s_ua("kube-apiserver"), uid=self.uuid())
        self.kcm = self._x509("system:kube-controller-manager", ["system:authenticated"],
                              k8s_ua("kube-controller-manager", "leader-election"),
                              _rbac("ClusterRoleBinding", "system:kube-controller-manager",
                                    "system:kube-controller-manager", 'User "system:kube-controller-manager"'))
        self.scheduler = self._x509("system:kube-scheduler", ["system:authenticated"],
                                    k8s_ua("kube-scheduler", "scheduler"),
                                    _rbac("ClusterRoleBinding", "system:kube-scheduler", "system:kube-scheduler",
                                          'User "system:kube-scheduler"'))
        self.controllers: dict[str, Identity] = {}
        people = "RBAC: allowed by ClusterRoleBinding \"platform-admins\" of ClusterRole \"cluster-admin\""
        self.alice = Identity("alice@example.com", ["platform-admins", "system:authenticated"], "192.168.10.21",
                              KUBECTL_MAC, reason=f'{people} to Group "platform-admins"')
        dev = 'RBAC: allowed by RoleBinding "developers/shop" of ClusterRole "edit" to Group "developers"'
        self.bob = Identity("bob@example.com", ["developers", "system:authenticated"], "192.168.10.34",
                            KUBECTL_OLD, reason=dev)
        self.dave = Identity("dave@example.com", ["developers", "system:authenticated"], "192.168.10.57",
                             KUBECTL_LINUX, reason=dev)
        self.kubeadm_admin = self._x509(
            "kubernetes-admin", ["kubeadm:cluster-admins", "system:authenticated"], k8s_ua("kubeadm"),
            _rbac("ClusterRoleBinding", "kubeadm:cluster-admins", "cluster-admin", 'Group "kubeadm:cluster-admins"'))
        workers = self.nodes[1:]
        self.pods: list[PodAccount] = []
        for node in self.nodes:
            self.pods.append(self._pod("kube-system", "kube-proxy", f"kube-proxy-{suffix(rng)}", node,
                                       node.ip, k8s_ua("kube-proxy"), "system:node-proxier"))
        for node in workers[:2]:
            self.pods.append(self._pod("kube-system", "coredns", f"coredns-668d6bf9bc-{suffix(rng)}", node,
                                       self.pod_ip(), "coredns/v0.0.0 (linux/amd64) kubernetes/$Format",
                                       "system:coredns"))
        self.argocd = self._pod("argocd", "argocd-application-controller", "argocd-application-controller-0",
                                workers[2], self.pod_ip(),
                                "argocd-application-controller/v0.0.0 (linux/amd64) kubernetes/$Format",
                                "argocd-application-controller")
        self.prometheus = self._pod("monitoring", "prometheus-k8s", "prometheus-k8s-0", workers[1], self.pod_ip(),
                                    "Prometheus/2.53.1", "prometheus-k8s")
        self.metrics = self._pod("kube-system", "metrics-server", f"metrics-server-7d4d5c8b9-{suffix(rng)}",
                                 workers[0], self.pod_ip(), "metrics-server/v0.7.2 (linux/amd64) kubernetes/$Format",
                                 "system:metrics-server")
        self.deployer = self._pod("ci", "deployer", f"gitlab-runner-6f9c7b-{suffix(rng)}", workers[0],
                                  self.pod_ip(), "Helm/3.15.2", "deployer")
        self.pods += [self.argocd, self.prometheus, self.metrics, self.deployer]

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def pod_ip(self) -> str:
        return f"10.244.{self.rng.randint(1, 3)}.{self.rng.randint(2, 250)}"

    def _x509(self, name: str, groups: list[str], ua: str, reason: str, ip: str = CP_IP) -> Identity:
        return Identity(name, groups, ip, ua, reason=reason,
                        extra={f"{EXTRA}credential-id": [f"X509SHA256={hexid(self.rng)}"]})

    def _node(self, name: str, ip: str) -> Node:
        kubelet = self._x509(f"system:node:{name}", ["system:nodes", "system:authenticated"], k8s_ua("kubelet"),
                             "", ip=ip)
        return Node(name, ip, self.uuid(), kubelet)

    def _pod(self, namespace: str, sa: str, pod: str, node: Node, ip: str, ua: str, role: str) -> PodAccount:
        reason = _rbac("ClusterRoleBinding", role, role, f'ServiceAccount "{sa}/{namespace}"')
        acct = PodAccount(namespace, sa, self.uuid(), pod, self.uuid(), node, ip, ua, reason)
        acct.tokens.append((-1e9, self.uuid()))
        return acct

    def controller(self, name: str) -> Identity:
        """A kube-controller-manager controller running under its own service account."""
        if name not in self.controllers:
            sa = f"system:serviceaccount:kube-system:{name}"
            role = f"system:controller:{name}"
            self.controllers[name] = Identity(
                sa, sa_groups("kube-system"), CP_IP, k8s_ua("kube-controller-manager", sa), uid=self.uuid(),
                extra={f"{EXTRA}credential-id": [f"JTI={self.uuid()}"]},
                reason=_rbac("ClusterRoleBinding", role, role, f'ServiceAccount "{name}/kube-system"'))
        return self.controllers[name]

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)
