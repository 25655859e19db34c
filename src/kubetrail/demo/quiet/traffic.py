"""A quiet cluster's half hour: a control-plane restart after an upgrade, then the steady hum.

* **Restart** (first two minutes): the kube-apiserver reconciles its bootstrap RBAC policy (updating
  roles and bindings that changed with the version: ``cluster-admin`` to ``system:masters``,
  ``system:discovery`` and ``system:public-info-viewer`` to everyone), its priority classes and API
  priority and fairness objects; kube-controller-manager takes its lease, creates the service
  account of a controller new in this version, and gets credentials for its controllers — legacy
  token Secrets filled by its tokens controller before 1.24, TokenRequests after.
* **Steady state**: leases and node status, watches, controllers' writes, Prometheus and
  metrics-server, CoreDNS and kube-proxy, a web application reading its configuration, people and
  the installer's admin certificate reading; every ten minutes a CronJob's Job and Pod go through
  cronjob-, job-, ttl-after-finished-controllers, the scheduler, the kubelet (with the pod's token)
  and the garbage collector; once a kubelet renews its client certificate through a CSR.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kubetrail.demo import objects as o
from kubetrail.demo.cluster import suffix
from kubetrail.demo.model import AuditLog, ref, rfc3339
from kubetrail.demo.pki import b64, make_csr, private_key
from kubetrail.demo.quiet.cast import Actor, Cast

RBAC = "rbac.authorization.k8s.io"
ISSUED = "authentication.kubernetes.io/issued-credential-id"
AUDIENCE = ["https://kubernetes.default.svc.cluster.local"]


def every(log: AuditLog, period: float, start: float = 0.0) -> Iterator[float]:
    t = start + log.rng.uniform(0, period)
    while t < log.end:
        yield t
        t += period * log.rng.uniform(0.9, 1.1)


class Traffic:
    def __init__(self, log: AuditLog, cast: Cast) -> None:
        self.log, self.c, self.rng, self.p = log, cast, log.rng, cast.p

    def req(self, t: float, actor: Actor, verb: str, objref: dict[str, Any] | None = None, **kw: Any) -> str:
        ann = dict(actor.annotations, **kw.pop("annotations", {}))
        return self.log.request(t, actor.who, verb, objref, annotations=ann, **kw)

    def run(self) -> None:
        self.apiserver_restart(20.0)
        self.kcm_restart(45.0)
        self.steady()
        for t in range(240, int(self.log.end) - 200, 600):
            self.cronjob(float(t) + self.rng.uniform(0, 30))
        self.kubelet_rotation(self.log.end * 0.6)

    # -- restart --------------------------------------------------------------------------------
    def apiserver_restart(self, t: float) -> None:
        api = self.c.apiserver
        roles = {"cluster-admin": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                                   {"nonResourceURLs": ["*"], "verbs": ["*"]}],
                 "system:controller:clusterrole-aggregation-controller": [
                     {"apiGroups": [RBAC], "resources": ["clusterroles"], "verbs": ["escalate", "get", "list",
                                                                                    "patch", "update", "watch"]}],
                 "system:controller:expand-controller": [
                     {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
                 "system:node": [{"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get", "list",
                                                                                                      "watch"]}]}
        for name, rules in roles.items():
            t += self.rng.uniform(0.01, 0.05)
            body = {"kind": "ClusterRole", "apiVersion": f"{RBAC}/v1", "metadata": o.meta(
                name, uid=self.c.uuid(), rv=self.log.rv(), labels={"kubernetes.io/bootstrapping": "rbac-defaults"},
                annotations={"rbac.authorization.kubernetes.io/autoupdate": "true"}), "rules": rules}
            self.req(t, api, "get", ref("clusterroles", name=name, group=RBAC), resp=body)
            self.req(t + 0.01, api, "update", ref("clusterroles", name=name, group=RBAC), req=body, resp=body)
        bindings = {"cluster-admin": ("cluster-admin", [("Group", "system:masters")]),
                    "system:discovery": ("system:discovery", [("Group", "system:authenticated")]),
                    "system:public-info-viewer": ("system:public-info-viewer", [("Group", "system:authenticated"),
                                                                                ("Group", "system:unauthenticated")]),
                    "system:basic-user": ("system:basic-user", [("Group", "system:authenticated")]),
                    "system:controller:clusterrole-aggregation-controller": (
                        "system:controller:clusterrole-aggregation-controller",
                        [("ServiceAccount", "clusterrole-aggregation-controller")])}
        for name, (role, subjects) in bindings.items():
            t += self.rng.uniform(0.01, 0.05)
            subs = [{"kind": k, "apiGroup": RBAC, "name": n} if k != "ServiceAccount"
                    else {"kind": k, "name": n, "namespace": "kube-system"} for k, n in subjects]
            body = o.cluster_role_binding(name, role, subs, uid=self.c.uuid(), rv=self.log.rv())
            verb = "create" if name == "system:public-info-viewer" and self.p.minor < 21 else "update"
            self.req(t, api, verb, ref("clusterrolebindings", name=name, group=RBAC), req=body, resp=body,
                     code=201 if verb == "create" else 200)
        for name in ("system-node-critical", "system-cluster-critical"):
            self.req(t + 0.1, api, "create", ref("priorityclasses", name=name, group="scheduling.k8s.io"), code=409)
        for name in ("system-leader-election", "workload-high", "kube-controller-manager", "catch-all"):
            self.req(t + 0.2, api, "update", ref("flowschemas", name=name, group="flowcontrol.apiserver.k8s.io",
                                                  version="v1beta3"))
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.req(t + 0.3, api, "get", ref("namespaces", name=ns))

    def kcm_restart(self, t: float) -> None:
        c = self.c
        self.req(t, c.kcm, "get", ref("leases", "kube-system", "kube-controller-manager", group="coordination.k8s.io"))
        self.req(t + 0.1, c.kcm, "update", ref("leases", "kube-system", "kube-controller-manager",
                                               group="coordination.k8s.io"))
        new = "ephemeral-volume-controller" if self.p.minor >= 23 else "ttl-after-finished-controller"
        root = c.kcm.who.at(ua=c.ua("kube-controller-manager", "controller-manager"))
        sa = {"kind": "ServiceAccount", "apiVersion": "v1", "metadata": o.meta(new, "kube-system")}
        self.log.request(t + 1, root, "create", ref("serviceaccounts", "kube-system"), req=sa, code=201)
        t += 2
        for name, actor in [(new, c.legacy_actor("kube-system", new, c.cp_ip, "")), *c.controllers.items()]:
            t += self.rng.uniform(0.05, 0.2)
            if self.p.controllers_use_legacy_tokens:
                self.token_secret(t, "kube-system", name, actor.token_secret, created=name == new)
            else:
                self.kcm_token(t, name)

    def token_secret(self, t: float, ns: str, sa: str, name: str, created: bool) -> None:
        """The tokens controller fills (and for a new account first creates) a token Secret."""
        tc = self.c.tokens_controller.who
        md = o.meta(name, ns, uid=self.c.uuid(), rv=self.log.rv(), created=rfc3339(t),
                    annotations={"kubernetes.io/service-account.name": sa})
        if created:
            self.log.request(t, tc, "create", ref("secrets", ns), req=o.secret(
                md, kind_type="kubernetes.io/service-account-token"), resp=o.secret(
                md, kind_type="kubernetes.io/service-account-token"), code=201)
        filled = o.secret(md, {"ca.crt": "-----BEGIN CERTIFICATE-----\nMIIC...\n-----END CERTIFICATE-----\n",
                               "namespace": ns, "token": f"eyJhbGciOiJSUzI1NiJ9.{suffix(self.rng, 40)}.sig"},
                          kind_type="kubernetes.io/service-account-token")
        self.log.request(t + 0.05, tc, "update", ref("secrets", ns, name), req=filled, resp=filled)
        self.log.request(t + 0.1, self.c.kcm.who.at(ua=self.c.ua("kube-controller-manager", "controller-manager")),
                         "get", ref("secrets", ns, name), resp=filled)

    def kcm_token(self, t: float, sa: str) -> None:
        """kube-controller-manager mints a controller's token (1.24+: no token Secrets any more)."""
        root = self.c.kcm.who.at(ua=self.c.ua("kube-controller-manager", "controller-manager"))
        jti = self.c.uuid()
        ann = {ISSUED: f"JTI={jti}"} if self.p.jti else {}
        req = o.token_request(None, 3600)
        self.log.request(t, root, "create", ref("serviceaccounts", "kube-system", sa, sub="token"), req=req,
                         resp=o.token_request(AUDIENCE, 3600, expires=rfc3339(t + 3600),
                                              md={"name": sa, "namespace": "kube-system"}), code=201, annotations=ann)

    # -- steady state ---------------------------------------------------------------------------
    def steady(self) -> None:
        c, log = self.c, self.log
        lease = lambda ns, name: ref("leases", ns, name, group="coordination.k8s.io")  # noqa: E731
        for node in c.nodes:
            for t in every(log, 10):  # the kubelet renews its node lease every 10 s
                self.req(t, node.kubelet, "update", lease("kube-node-lease", node.name), query="timeout=10s")
            for t in every(log, 300):
                self.req(t, node.kubelet, "patch", ref("nodes", name=node.name, sub="status"))
        for actor, name in ((c.kcm, "kube-controller-manager"), (c.scheduler, "kube-scheduler")):
            for t in every(log, 30):
                self.req(t, actor, "update", lease("kube-system", name), query="timeout=5s")
        if c.p.apiserver_identity_leases:
            for t in every(log, 120):
                self.req(t, c.apiserver, "update", lease("kube-system", "apiserver-" + c.uuid()[:8]))
        for t in every(log, 45):
            self.req(t, c.controllers["endpointslice-controller"], "update",
                     ref("endpointslices", "shop", "web-" + suffix(self.rng), group="discovery.k8s.io"))
        for t in every(log, 90):
            self.req(t, c.controllers["replicaset-controller"], "update",
                     ref("replicasets", "shop", "web-6d4cf56db6", group="apps", sub="status"))
            self.req(t + 1, c.controllers["horizontal-pod-autoscaler"], "get",
                     ref("pods", "shop", group="metrics.k8s.io", version="v1beta1"), query="labelSelector=app%3Dweb")
        for t in every(log, 300):
            self.req(t, c.controllers["resourcequota-controller"], "list", ref("pods", "shop"))
        self.watches()
        self.apps()

    def watches(self) -> None:
        c = self.c
        watchers: list[tuple[Actor, dict[str, Any]]] = [(p, ref("endpointslices", group="discovery.k8s.io"))
                                                         for p in c.kube_proxy + c.coredns]
        watchers += [(c.kcm, ref("secrets")), (c.kcm, ref("pods")), (c.scheduler, ref("pods")),
                     (c.prometheus, ref("pods")), (c.prometheus, ref("endpoints"))]
        watchers += [(n.kubelet, ref("pods")) for n in c.nodes]
        for actor, objref in watchers:
            t = self.rng.uniform(0, 300)
            while t < self.log.end:
                secs = self.rng.randint(300, 599)
                self.req(t, actor, "watch", objref, query=f"timeoutSeconds={secs}&watch=true", duration=secs)
                t += secs + self.rng.uniform(0.5, 3)

    def apps(self) -> None:
        c, log = self.c, self.log
        for t in every(log, 60):
            self.req(t, c.prometheus, "get", uri="/metrics")
            self.req(t + 0.2, c.prometheus, "list", ref("nodes"))
        for t in every(log, 120):
            review = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                      "metadata": {"creationTimestamp": None}, "spec": {"token": "eyJhbGciOiJSUzI1NiJ9.e30.sig"},
                      "status": {"user": {}}}
            self.req(t, c.metrics, "create", ref("tokenreviews", group="authentication.k8s.io"), req=review, code=201)
            self.req(t + 1, c.metrics, "get", ref("nodes", name=c.nodes[0].name))
        for web in c.web:
            for t in every(log, 120):
                self.req(t, web, "get", ref("configmaps", "shop", "web-config"))
        for person in c.people:
            for t in every(log, 400):
                self.req(t, person, "list", ref("pods", "shop"), query="limit=500")
                self.req(t + 3, person, "get", ref("pods", "shop", "web-6d4cf56db6-" + suffix(self.rng), sub="log"),
                         duration=20)
        if c.admin is not None:
            for t in every(log, 500):
                self.req(t, c.admin, "get", ref("nodes"), query="limit=500")

    # -- a CronJob run ----------------------------------------------------------------------------
    def cronjob(self, t: float) -> None:
        c = self.c
        job = f"report-{int(t)}"
        job_body = {"kind": "Job", "apiVersion": "batch/v1", "metadata": o.meta(
            job, "batch", owner=o.owner("CronJob", "report", c.uuid(), "batch/v1")),
            "spec": {"template": {"spec": {"containers": [o.container("report", "registry.example.com/report:2.3")],
                                           "restartPolicy": "OnFailure", "serviceAccountName": "report"}}}}
        self.req(t, c.controllers["cronjob-controller"], "create", ref("jobs", "batch", group="batch"), req=job_body,
                 code=201)
        pod = f"{job}-{suffix(self.rng)}"
        pod_body = o.pod(o.meta(pod, "batch", owner=o.owner("Job", job, c.uuid(), "batch/v1")),
                         [o.container("report", "registry.example.com/report:2.3")], sa="report",
                         restartPolicy="OnFailure")
        self.req(t + 0.5, c.controllers["job-controller"], "create", ref("pods", "batch"), req=pod_body, code=201)
        node = c.nodes[1 + int(t) % (len(c.nodes) - 1)]
        self.req(t + 0.6, c.scheduler, "create", ref("pods", "batch", pod, sub="binding"),
                 req=o.binding(pod, "batch", node.name, c.uuid()), code=201)
        if not self.p.pods_use_legacy_tokens:
            jti = c.uuid()
            bound = {"kind": "Pod", "apiVersion": "v1", "name": pod, "uid": c.uuid()}
            self.req(t + 1.5, node.kubelet, "create", ref("serviceaccounts", "batch", "report", sub="token"),
                     req=o.token_request(None, 3607, bound), code=201,
                     annotations={ISSUED: f"JTI={jti}"} if self.p.jti else {})
        for dt in (2.0, 40.0):
            self.req(t + dt, node.kubelet, "patch", ref("pods", "batch", pod, sub="status"))
        self.req(t + 41, c.controllers["job-controller"], "update", ref("jobs", "batch", job, group="batch",
                                                                        sub="status"))
        self.req(t + 161, c.controllers["ttl-after-finished-controller"], "delete", ref("jobs", "batch", job,
                                                                                       group="batch"))
        self.req(t + 162, c.controllers["generic-garbage-collector"], "delete", ref("pods", "batch", pod))
        self.req(t + 163, node.kubelet, "delete", ref("pods", "batch", pod))

    # -- a kubelet renews its client certificate --------------------------------------------------
    def kubelet_rotation(self, t: float) -> None:
        c = self.c
        node = c.nodes[-1]
        signer = "kubernetes.io/kubelet-serving" if self.p.platform == "eks" else \
            "kubernetes.io/kube-apiserver-client-kubelet"
        pem = make_csr(private_key(self.rng), node.kubelet.who.username, ["system:nodes"])
        name = f"csr-{suffix(self.rng)}"
        usages = ["digital signature", "server auth"] if self.p.platform == "eks" else ["digital signature",
                                                                                         "client auth"]
        body = o.csr(o.meta(name, uid=c.uuid(), rv=self.log.rv()), b64(pem), signer, usages,
                     user={"username": node.kubelet.who.username, "groups": node.kubelet.who.groups})
        self.req(t, node.kubelet, "create", ref("certificatesigningrequests", group="certificates.k8s.io"),
                 req=o.csr(o.meta(generate_name="csr-"), b64(pem), signer, usages), resp=body, code=201)
        approver = {"eks": Actor(c.managed("eks:certificate-controller")),
                    "gke": Actor(c.managed("system:gcp-controller-manager"))}.get(
            self.p.platform, c.controllers["certificate-controller"])
        approved = dict(body, status={"conditions": [o.condition("Approved", "AutoApproved",
                                                                 "Auto approving kubelet certificate", rfc3339(t + 1))]})
        self.req(t + 1, approver, "update", ref("certificatesigningrequests", name=name, group="certificates.k8s.io",
                                                sub="approval"), req=approved, resp=approved)
        self.req(t + 2, approver, "update", ref("certificatesigningrequests", name=name, group="certificates.k8s.io",
                                                sub="status"), req=approved, resp=approved)
