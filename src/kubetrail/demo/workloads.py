"""Ordinary user and workload traffic: people at work, a Helm upgrade, a CronJob, a kubelet cert rotation.

Some of it is deliberately close to the attack (a developer's legitimate ``kubectl exec``, an
auto-approved kubelet CSR, Secret reads) so that the difference has to be found, not assumed. Secret
values written or read here are "planted": recorded in ``planted`` so tests can prove none of them
survives ingest.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kubetrail.demo import objects as o
from kubetrail.demo.cluster import Cluster, suffix
from kubetrail.demo.model import T0, AuditLog, Identity, ref, rfc3339
from kubetrail.demo.pki import CertificateAuthority, Issued, b64, make_csr, private_key

PSA = {"pod-security.kubernetes.io/enforce-policy": "privileged:latest"}
DISCOVERY = ("/api?timeout=32s", "/apis?timeout=32s")
HELM = (0.05, 0.4)  # seconds between a tool's calls


class Workloads:
    def __init__(self, log: AuditLog, cluster: Cluster, ca: CertificateAuthority, planted: list[str]) -> None:
        self.log, self.c, self.ca, self.rng, self.planted = log, cluster, ca, log.rng, planted
        self.kubelet_cert: Issued | None = None

    def plant(self, value: str) -> str:
        self.planted.append(value)
        return value

    def run(self) -> None:
        self.alice_checks(300)
        self.bob_debugs(900)
        self.dave_works(1200)
        self.alice_payments_secret(1500)
        self.kubelet_rotation(1800)
        self.helm_upgrade(2100)
        self.bob_secret_and_port_forward(2400)
        self.kubeadm_join_token(2700)
        self.bob_exec(5400)
        self.alice_checks(6000)
        t = 420.0
        while t < self.log.end:
            self.cronjob_run(t)
            t += 900

    def kubectl(self, t: float, who: Identity, verb: str, objref: dict[str, Any] | None = None, *,
                pause: tuple[float, float] = (4, 40), **kw: Any) -> float:
        """One client call; returns when the next one starts (a person thinks, a tool does not)."""
        self.log.request(t, who, verb, objref, **kw)
        return t + self.rng.uniform(*pause)

    def discovery(self, t: float, who: Identity) -> float:
        for uri in DISCOVERY:
            self.log.request(t, who, "get", uri=uri)
            t += 0.02
        return t + 0.2

    def alice_checks(self, t: float) -> None:
        who = self.c.alice
        t = self.discovery(t, who)
        t = self.kubectl(t, who, "list", ref("nodes"), query="limit=500")
        t = self.kubectl(t, who, "list", ref("pods"), query="limit=500")
        t = self.kubectl(t, who, "list", ref("nodes", group="metrics.k8s.io", version="v1beta1"))
        t = self.kubectl(t, who, "list", ref("events", "shop"), query="limit=500")
        self.kubectl(t, who, "list", ref("deployments", "shop", group="apps"), query="limit=500")

    def bob_debugs(self, t: float) -> None:
        bob = self.c.bob
        t = self.discovery(t, bob)
        t = self.kubectl(t, bob, "list", ref("pods", "shop"), query="limit=500")
        pod = f"frontend-7c9d8f5b4-{suffix(self.rng)}"
        t = self.kubectl(t, bob, "get", ref("pods", "shop", pod, sub="log"), query="container=frontend&tailLines=200",
                         duration=self.rng.uniform(1, 3))
        t = self.kubectl(t, bob, "get", ref("pods", "shop", pod))
        self.kubectl(t, bob, "list", ref("events", "shop"),
                     query=f"fieldSelector=involvedObject.name%3D{pod}%2CinvolvedObject.namespace%3Dshop")

    def dave_works(self, t: float) -> None:
        dave = self.c.dave
        t = self.discovery(t, dave)
        t = self.kubectl(t, dave, "list", ref("pods", "shop"), query="limit=500")
        t = self.kubectl(t, dave, "get", ref("deployments", "shop", "cart", group="apps"))
        self.kubectl(t, dave, "get", ref("pods", "shop", f"cart-5f6d7c8b9-{suffix(self.rng)}", sub="log"),
                     query="follow=true", duration=self.rng.uniform(60, 180))

    def alice_payments_secret(self, t: float) -> None:
        """``kubectl apply -f payments-api.yaml``: the key also lands in the last-applied annotation."""
        alice, log = self.c.alice, self.log
        key = self.plant("sk_live_51KtDemoPaymentsApiKey4711")
        manifest = o.secret({"name": "payments-api", "namespace": "shop"}, {"api-key": key})
        md = o.meta("payments-api", "shop", annotations={"kubectl.kubernetes.io/last-applied-configuration":
                                                          o.last_applied(manifest)})
        t = self.kubectl(t, alice, "get", ref("secrets", "shop", "payments-api"), code=404,
                         message='secrets "payments-api" not found')
        body = o.secret(md, {"api-key": key})
        stored = o.secret(dict(md, uid=log.uuid(), resourceVersion=log.rv(), creationTimestamp=rfc3339(t)),
                          {"api-key": key})
        t = self.kubectl(t, alice, "create", ref("secrets", "shop"), query="fieldManager=kubectl-client-side-apply",
                         req=body, resp=stored, code=201)
        self.kubectl(t, alice, "patch", ref("deployments", "shop", "payments", group="apps"),
                     req={"spec": {"template": {"metadata": {"annotations": {
                         "kubectl.kubernetes.io/restartedAt": rfc3339(t)}}}}})

    def bob_secret_and_port_forward(self, t: float) -> None:
        bob, log = self.c.bob, self.log
        password = self.plant("Pg-demo-Secr3t-7Hq2xW")
        md = o.meta("db-credentials", "shop", uid=log.uuid(), rv=log.rv(), created="2026-01-20T14:03:11Z")
        t = self.kubectl(t, bob, "get", ref("secrets", "shop", "db-credentials"),
                         resp=o.secret(md, {"username": "shop", "password": password}))
        self.kubectl(t, bob, "create", ref("pods", "shop", "postgres-0", sub="portforward"),
                     code=101, duration=self.rng.uniform(500, 700))

    def bob_exec(self, t: float) -> None:
        """A legitimate interactive exec (kubectl >= 1.30 speaks WebSocket: verb ``get``, code 101)."""
        pod = f"cart-5f6d7c8b9-{suffix(self.rng)}"
        self.kubectl(t, self.c.bob, "get", ref("pods", "shop", pod, sub="exec"),
                     query="command=sh&container=cart&stdin=true&stdout=true&tty=true", code=101,
                     duration=self.rng.uniform(120, 300))

    def helm_upgrade(self, t: float) -> None:
        """The CI runner's Helm upgrades the shop: release Secrets read and written, a Deployment patched."""
        ci, log = self.c.deployer.identity(t), self.log
        release = self.plant("H4sIAAAAAAAC_kubetrail-demo-helm-release-v7")
        new_release = self.plant("H4sIAAAAAAAC_kubetrail-demo-helm-release-v8")
        v7 = o.secret(o.meta("sh.helm.release.v1.shop.v7", "shop", uid=log.uuid(), rv=log.rv(),
                             labels={"name": "shop", "owner": "helm", "status": "deployed", "version": "7"}),
                      {"release": release}, kind_type="helm.sh/release.v1")
        t = self.kubectl(t, ci, "list", ref("secrets", "shop"), query="labelSelector=name%3Dshop%2Cowner%3Dhelm",
                         resp={"kind": "SecretList", "apiVersion": "v1", "metadata": {"resourceVersion": log.rv()},
                               "items": [v7]}, pause=HELM)
        v8 = o.secret(o.meta("sh.helm.release.v1.shop.v8", "shop",
                             labels={"name": "shop", "owner": "helm", "status": "pending-upgrade", "version": "8"}),
                      {"release": new_release}, kind_type="helm.sh/release.v1")
        t = self.kubectl(t, ci, "create", ref("secrets", "shop"), req=v8, resp=v8, code=201, pause=HELM)
        t = self.kubectl(t, ci, "patch", ref("deployments", "shop", "frontend", group="apps"),
                         req={"spec": {"template": {"spec": {"containers": [
                             {"name": "frontend", "image": "registry.example.com/shop/frontend:1.9.0"}]}}}}, pause=HELM)
        rs_uid = log.uuid()
        log.request(t + 0.1, self.c.controller("deployment-controller"), "create",
                    ref("replicasets", "shop", group="apps"), code=201,
                    req={"kind": "ReplicaSet", "apiVersion": "apps/v1",
                         "metadata": o.meta("frontend-6b8f9d7c5", "shop", owner=o.owner("Deployment", "frontend",
                                                                                       log.uuid()))})
        for i in range(3):
            self.pod_lifecycle(t + 0.5 + i * 20, "shop", "frontend-6b8f9d7c5", ("ReplicaSet", rs_uid),
                               self.c.controller("replicaset-controller"), "registry.example.com/shop/frontend:1.9.0")
            log.request(t + 15 + i * 20, self.c.controller("replicaset-controller"), "delete",
                        ref("pods", "shop", f"frontend-7c9d8f5b4-{suffix(self.rng)}"))
        v7["metadata"]["labels"]["status"] = "superseded"
        self.kubectl(t + 70, ci, "update", ref("secrets", "shop", "sh.helm.release.v1.shop.v7"), req=v7, resp=v7)

    def kubeadm_join_token(self, t: float) -> None:
        """``kubeadm token create`` on the control-plane node with admin.conf: a bootstrap token Secret.

        admin.conf's certificate was made by kubeadm from the CA key on disk, never through the CSR
        API, so the credential inventory sees it used but never issued (an unaccounted certificate).
        """
        admin = self.c.kubeadm_admin
        token_id = "r8w2n5"
        secret = self.plant("h3k9m2q7x4c8v1b6")
        data = {"auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
                "description": "Proxy for managing TTL for the kubeadm-certs secret",
                "expiration": rfc3339(t + 86400), "token-id": token_id, "token-secret": secret,
                "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true"}
        name = f"bootstrap-token-{token_id}"
        t = self.kubectl(t, admin, "get", ref("secrets", "kube-system", name), code=404,
                         message=f'secrets "{name}" not found')
        body = o.secret(o.meta(name, "kube-system"), data, kind_type="bootstrap.kubernetes.io/token")
        stored = o.secret(o.meta(name, "kube-system", uid=self.log.uuid(), rv=self.log.rv(), created=rfc3339(t)),
                          data, kind_type="bootstrap.kubernetes.io/token")
        self.log.request(t, admin, "create", ref("secrets", "kube-system"), req=body, resp=stored, code=201)

    def pod_lifecycle(self, t: float, ns: str, prefix: str, owner: tuple[str, str], creator: Identity,
                      image: str) -> str:
        """A controller creates a pod; the scheduler binds it; its kubelet reports it running."""
        log, c = self.log, self.c
        name = f"{prefix}-{suffix(self.rng)}"
        kind, owner_uid = owner
        api = "batch/v1" if kind == "Job" else "apps/v1"
        md = o.meta(generate_name=f"{prefix}-", namespace=ns, labels={"app": prefix.split("-")[0]},
                    owner=o.owner(kind, prefix, owner_uid, api))
        log.request(t, creator, "create", ref("pods", ns), req=o.pod(md, [o.container(prefix.split("-")[0], image)]),
                    code=201, annotations=PSA)
        node = self.rng.choice(c.nodes[1:])
        uid = log.uuid()
        log.request(t + 0.01, c.scheduler, "create", ref("pods", ns, name, sub="binding"),
                    req=o.binding(name, ns, node.name, uid), code=201)
        for dt in (1.2, self.rng.uniform(3, 9)):
            log.request(t + dt, node.kubelet_at(t + dt), "patch", ref("pods", ns, name, sub="status", uid=uid, rv=log.rv()))
        return name

    def cronjob_run(self, t: float) -> None:
        c, log = self.c, self.log
        job = f"report-{29_578_000 + int(t // 60)}"
        job_uid = log.uuid()
        log.request(t, c.controller("cronjob-controller"), "create", ref("jobs", "shop", group="batch"), code=201,
                    req={"kind": "Job", "apiVersion": "batch/v1", "metadata": o.meta(job, "shop")})
        self.pod_lifecycle(t + 0.05, "shop", job, ("Job", job_uid), c.controller("job-controller"),
                           "registry.example.com/shop/report:2.1.0")
        log.request(t + 40, c.controller("job-controller"), "update",
                    ref("jobs", "shop", job, group="batch", sub="status", rv=log.rv()))
        log.request(t + 40.2, c.controller("cronjob-controller"), "update",
                    ref("cronjobs", "shop", "report", group="batch", sub="status", rv=log.rv()))
        if t > 3000:
            old = f"report-{29_578_000 + int((t - 2700) // 60)}"
            log.request(t + 41, c.controller("cronjob-controller"), "delete", ref("jobs", "shop", old, group="batch"),
                        req={"kind": "DeleteOptions", "apiVersion": "batch/v1", "propagationPolicy": "Background"})

    def kubelet_rotation(self, t: float) -> None:
        """demo-worker-3 renews its client certificate: CSR, auto-approval, signing, then use of the new cert."""
        c, log = self.c, self.log
        node = c.node("demo-worker-3")
        key = private_key(self.rng)
        pem = make_csr(key, f"system:node:{node.name}", ["system:nodes"])
        name = f"csr-{suffix(self.rng)}"
        uid = log.uuid()
        signer, usages = "kubernetes.io/kube-apiserver-client-kubelet", ["digital signature", "client auth"]
        req = o.csr({"generateName": "csr-", "creationTimestamp": None}, b64(pem), signer, usages)
        identity = {"username": node.kubelet.username, "groups": node.kubelet.groups,
                    "extra": node.kubelet.extra}
        md = {"name": name, "generateName": "csr-", "uid": uid, "resourceVersion": log.rv(),
              "creationTimestamp": rfc3339(t)}
        log.request(t, node.kubelet, "create", ref("certificatesigningrequests", group="certificates.k8s.io"),
                    req=req, resp=o.csr(md, b64(pem), signer, usages, user=identity), code=201)
        csr_ref = ref("certificatesigningrequests", name=name, group="certificates.k8s.io", uid=uid)
        approver = c.controller("certificate-controller")
        cond = o.condition("Approved", "AutoApproved", "Auto approving kubelet client certificate after "
                           "SubjectAccessReview.", rfc3339(t + 1))
        approved = o.csr(md, b64(pem), signer, usages, user=identity, status={"conditions": [cond]})
        log.request(t + 1, approver, "update", dict(csr_ref, subresource="approval", resourceVersion=log.rv()),
                    req=approved, resp=approved)
        issued = self.ca.sign(pem, T0 + timedelta(seconds=t + 1.5), 365 * 86400)
        signed = o.csr(md, b64(pem), signer, usages, user=identity,
                       status={"conditions": [cond], "certificate": b64(issued.pem)})
        log.request(t + 1.5, approver, "update", dict(csr_ref, subresource="status", resourceVersion=log.rv()),
                    req=signed, resp=signed)
        log.request(t + 2, node.kubelet, "get", csr_ref)
        node.renewed.append((t + 30, node.kubelet.with_credential(issued.credential_id)))
        self.kubelet_cert = issued
