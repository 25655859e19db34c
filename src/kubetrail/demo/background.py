"""Ordinary control-plane traffic: the steady hum an attack hides in.

Periodic processes with jittered periods: node and leader-election lease renewals, kubelet node
status, watches that reconnect at their ``timeoutSeconds``, controllers writing status and
EndpointSlices, Prometheus scraping ``/metrics``, metrics-server's delegated TokenReviews and the
kubelets refreshing pod tokens (TokenRequest, ``issued-credential-id`` annotation; the pod's later
requests carry the new ``JTI=``). ``scale`` multiplies the rate of the periodic processes so that
``kubetrail demo --events N`` can ask for a bigger or smaller log.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from urllib.parse import quote

from kubetrail.demo import objects as o
from kubetrail.demo.cluster import Cluster, Node, PodAccount, k8s_ua
from kubetrail.demo.model import AuditLog, Identity, ref, rfc3339
from kubetrail.demo.pki import bound_token_claims, jwt

EPOCH = 1773478800  # T0 as a Unix time (2026-03-14T09:00:00Z)
API_AUDIENCE = ["https://kubernetes.default.svc.cluster.local"]
TOKEN_REFRESH_SECS = 2886.0  # kubelet renews a 3607 s projected token after 80% of its lifetime


def every(rng: random.Random, period: float, end: float, start: float | None = None) -> Iterator[float]:
    t = rng.uniform(0, period) if start is None else start
    while t < end:
        yield t
        t += period * rng.uniform(0.9, 1.1)


def _watch_query(rng: random.Random, selector: str = "") -> str:
    secs = rng.randint(300, 599)
    q = "allowWatchBookmarks=true"  # url.Values.Encode sorts the keys
    if selector:
        q = f"{q}&fieldSelector={quote(selector, safe='')}"
    q = f"{q}&resourceVersion={rng.randint(4_100_000, 4_180_000)}"
    return f"{q}&timeout={secs // 60}m{secs % 60}s&timeoutSeconds={secs}&watch=true"


class Background:
    def __init__(self, log: AuditLog, cluster: Cluster, scale: float = 1.0) -> None:
        self.log, self.c, self.rng, self.scale = log, cluster, log.rng, scale
        self.refreshes = self._plan_token_refreshes()

    def _plan_token_refreshes(self) -> list[tuple[float, PodAccount, str]]:
        """Decide when each pod's token is renewed; the pod switches to it a minute later."""
        out = []
        for acct in self.c.pods:
            t = self.rng.uniform(60, TOKEN_REFRESH_SECS)
            while t < self.log.end:
                jti = self.c.uuid()
                acct.tokens.append((t + 60, jti))
                out.append((t, acct, jti))
                t += TOKEN_REFRESH_SECS * self.rng.uniform(0.98, 1.02)
        return out

    def run(self) -> None:
        self.leases()
        self.node_status()
        self.watches()
        self.controllers()
        self.monitoring()
        for t, acct, jti in self.refreshes:
            self.token_refresh(t, acct, jti)

    def _p(self, period: float) -> float:
        return period / self.scale

    def leases(self) -> None:
        log, c, end = self.log, self.c, self.log.end
        for node in c.nodes:
            for t in every(self.rng, self._p(90), end):
                log.request(t, node.kubelet_at(t), "update",
                            ref("leases", "kube-node-lease", node.name, group="coordination.k8s.io"),
                            query="timeout=10s")
        for who, name in ((c.kcm, "kube-controller-manager"), (c.scheduler, "kube-scheduler")):
            for t in every(self.rng, self._p(60), end):
                log.request(t, who, "update", ref("leases", "kube-system", name, group="coordination.k8s.io"),
                            query="timeout=5s")
        name = f"apiserver-{self.c.uuid()[:26].replace('-', '')}"
        for t in every(self.rng, self._p(120), end):
            log.request(t, c.apiserver, "update", ref("leases", "kube-system", name, group="coordination.k8s.io"))

    def node_status(self) -> None:
        for node in self.c.nodes:
            for t in every(self.rng, self._p(300), self.log.end):
                self.log.request(t, node.kubelet_at(t), "get", ref("nodes", name=node.name), query="timeout=10s")
                self.log.request(t + 0.05, node.kubelet_at(t), "patch", ref("nodes", name=node.name, sub="status"))

    def watches(self) -> None:
        c = self.c
        shared = c.kcm.at(ua=k8s_ua("kube-controller-manager", "shared-informers"))
        watchers: list[tuple[Identity | PodAccount | Node, dict[str, str], str]] = []
        for node in c.nodes:
            watchers.append((node, ref("pods"), f"spec.nodeName={node.name}"))
            watchers.append((node, ref("nodes"), f"metadata.name={node.name}"))
        for acct in c.pods:
            if acct.sa in ("kube-proxy", "coredns"):
                watchers.append((acct, ref("endpointslices", group="discovery.k8s.io"), ""))
        watchers.append((c.scheduler, ref("pods"), "status.phase!=Failed,status.phase!=Succeeded"))
        watchers.append((c.scheduler, ref("nodes"), ""))
        for resource, group in (("pods", ""), ("deployments", "apps"), ("replicasets", "apps"),
                                ("jobs", "batch"), ("secrets", "")):
            watchers.append((shared, ref(resource, group=group), ""))
        watchers.append((c.argocd, ref("deployments", group="apps"), ""))
        watchers.append((c.prometheus, ref("pods"), ""))
        for who, objref, selector in watchers:
            t = self.rng.uniform(0, 400)
            while t < self.log.end:
                query = _watch_query(self.rng, selector)
                secs = int(query.rsplit("timeoutSeconds=", 1)[1].split("&")[0])
                ident = (who.identity(t) if isinstance(who, PodAccount)
                         else who.kubelet_at(t) if isinstance(who, Node) else who)
                self.log.request(t, ident, "watch", objref, query=query, duration=secs)
                t += secs + self.rng.uniform(0.5, 3)

    def controllers(self) -> None:
        c, log = self.c, self.log
        slices = ["frontend-8xk2p", "cart-q7d4m", "payments-vv9tn", "postgres-2hj6c"]
        for t in every(self.rng, self._p(45), log.end):
            pick = self.rng.random()
            if pick < 0.4:
                name = self.rng.choice(slices)
                log.request(t, c.controller("endpointslice-controller"), "update",
                            ref("endpointslices", "shop", name, group="discovery.k8s.io", rv=log.rv()))
            elif pick < 0.6:
                log.request(t, c.controller("replicaset-controller"), "update",
                            ref("replicasets", "shop", self.rng.choice(["frontend-7c9d8f5b4", "cart-5f6d7c8b9"]),
                                group="apps", sub="status", rv=log.rv()))
            elif pick < 0.8:
                log.request(t, c.controller("horizontal-pod-autoscaler"), "get",
                            ref("pods", "shop", group="metrics.k8s.io", version="v1beta1"),
                            query="labelSelector=app%3Dfrontend")
            else:
                log.request(t, c.controller("resourcequota-controller"), "list", ref("pods", "shop"),
                            query="limit=500&resourceVersion=0")

    def monitoring(self) -> None:
        c, log = self.c, self.log
        for t in every(self.rng, self._p(60), log.end):
            log.request(t, c.prometheus.identity(t), "get", uri="/metrics")
        for t in every(self.rng, self._p(300), log.end):
            caller = c.prometheus.identity(t)
            token = jwt(self.rng, bound_token_claims(
                jti=caller.credential_id.removeprefix("JTI="), namespace="monitoring", sa="prometheus-k8s",
                sa_uid=c.prometheus.sa_uid, iat=EPOCH + int(t) - 1800, exp=EPOCH + int(t) + 31_536_000,
                audiences=API_AUDIENCE, pod=(c.prometheus.pod, c.prometheus.pod_uid),
                node=(c.prometheus.node.name, c.prometheus.node.uid)))
            review = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                      "metadata": {"creationTimestamp": None}, "spec": {"token": token}, "status": {"user": {}}}
            ms = c.metrics.identity(t)
            log.request(t, ms, "create", ref("tokenreviews", group="authentication.k8s.io"), req=review, code=201)
            sar = {"kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                   "metadata": {"creationTimestamp": None},
                   "spec": {"nonResourceAttributes": {"path": "/metrics", "verb": "get"},
                            "user": caller.username, "groups": caller.groups, "uid": caller.uid},
                   "status": {"allowed": False}}
            log.request(t + 0.004, ms, "create", ref("subjectaccessreviews", group="authorization.k8s.io"),
                        req=sar, code=201)

    def token_refresh(self, t: float, acct: PodAccount, jti: str) -> None:
        """The kubelet renews a pod's projected token (the default, extended, 3607 s kind)."""
        iat = EPOCH + int(t)
        claims = bound_token_claims(jti=jti, namespace=acct.namespace, sa=acct.sa, sa_uid=acct.sa_uid, iat=iat,
                                    exp=iat + 31_536_000, audiences=API_AUDIENCE, pod=(acct.pod, acct.pod_uid),
                                    node=(acct.node.name, acct.node.uid), warnafter=iat + 3607)
        bound = {"kind": "Pod", "apiVersion": "v1", "name": acct.pod, "uid": acct.pod_uid}
        req = o.token_request(None, 3607, bound)
        resp = o.token_request(API_AUDIENCE, 3607, bound, token=jwt(self.rng, claims, kid="demo-sa-key-1"),
                               expires=rfc3339(t + 3607),
                               md={"name": acct.sa, "namespace": acct.namespace, "creationTimestamp": rfc3339(t)})
        self.log.request(t, acct.node.kubelet_at(t), "create",
                         ref("serviceaccounts", acct.namespace, acct.sa, sub="token"), req=req, resp=resp,
                         code=201, annotations={"authentication.kubernetes.io/issued-credential-id": f"JTI={jti}"})
