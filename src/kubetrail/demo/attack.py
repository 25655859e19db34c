"""The attack timeline hidden in the demo log (times are minutes after 09:00 UTC).

10  alice (platform admin) creates ServiceAccount kube-system/ops-automation and binds it to
    cluster-admin (ClusterRoleBinding ops-automation-admin): a legitimate setup, used later.
55  anonymous probes from 203.0.113.45: 401s with a bad token, 403s for system:anonymous.
62  dave@example.com's stolen credentials are used from 203.0.113.45: recon, then a CSR for
    CN=evil-admin, O=system:masters with signer kubernetes.io/kube-apiserver-client.
71  alice approves it by hand (kubectl certificate approve); the kcm signer issues the certificate.
75  evil-admin (credential id X509SHA256=<sha256 of the issued cert>, group system:masters): lists
    Secrets cluster-wide, binds dave to cluster-admin, starts a privileged pod mounting the node's
    ``/``, execs into it twice (WebSocket ``get`` and SPDY ``create``, both 101).
82  evil-admin mints a two-year token for ops-automation (TokenRequest; issued-credential-id JTI=…).
85  that token (credential id JTI=…) is used from a new address, 198.51.100.77: reads a Secret,
    creates a legacy service-account token Secret (persistence), deletes Events in kube-system.
95  the legacy token is used (``authentication.k8s.io/legacy-token`` annotation, no credential id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from kubetrail.demo import objects as o
from kubetrail.demo.background import API_AUDIENCE, EPOCH
from kubetrail.demo.cluster import KUBECTL_LINUX, Cluster, sa_groups, suffix
from kubetrail.demo.model import T0, AuditLog, Identity, ref, rfc3339, uri_for
from kubetrail.demo.pki import CertificateAuthority, b64, bound_token_claims, jwt, make_csr, private_key

ATTACKER_IP = "203.0.113.45"
TOKEN_IP = "198.51.100.77"
PSA = {"pod-security.kubernetes.io/enforce-policy": "privileged:latest"}
CSR_GROUP = "certificates.k8s.io"


@dataclass
class AttackFacts:
    """What the attack left behind, for the summary's hints and for tests."""

    csr_name: str = "dave-laptop-renewal"
    cert_credential_id: str = ""
    cert_serial: int = 0
    token_jti: str = ""
    token: str = ""
    legacy_secret: str = "ops-automation-token"
    legacy_token: str = ""
    pod: str = "node-debugger"
    binding: str = "system:kube-maintenance"
    attacker_ips: tuple[str, str] = (ATTACKER_IP, TOKEN_IP)
    audit_ids: dict[str, str] = field(default_factory=dict)  # step -> auditID


class Attack:
    def __init__(self, log: AuditLog, cluster: Cluster, ca: CertificateAuthority, planted: list[str]) -> None:
        self.log, self.c, self.ca, self.rng, self.planted = log, cluster, ca, log.rng, planted
        self.facts = AttackFacts()
        self.sa_uid = cluster.uuid()
        self.ops = Identity("system:serviceaccount:kube-system:ops-automation", sa_groups("kube-system"), TOKEN_IP,
                            "kubectl/v1.30.2 (windows/amd64) kubernetes/3968350", uid=self.sa_uid,
                            reason='RBAC: allowed by ClusterRoleBinding "ops-automation-admin" of ClusterRole '
                                   '"cluster-admin" to ServiceAccount "ops-automation/kube-system"')

    def run(self) -> AttackFacts:
        self.setup(600.41)
        self.probes(3300.27)
        self.csr(3720.81)
        self.masters(4500.53)
        self.token(4900.16)
        self.legacy_use(5700.64)
        return self.facts

    def note(self, step: str, audit_id: str) -> None:
        self.facts.audit_ids.setdefault(step, audit_id)

    def setup(self, t: float) -> None:
        alice, log = self.c.alice, self.log
        sa = {"kind": "ServiceAccount", "apiVersion": "v1", "metadata": o.meta("ops-automation", "kube-system")}
        log.request(t, alice, "create", ref("serviceaccounts", "kube-system"), req=sa, code=201)
        crb = o.cluster_role_binding("ops-automation-admin", "cluster-admin",
                                     [{"kind": "ServiceAccount", "name": "ops-automation", "namespace": "kube-system"}])
        stored = o.cluster_role_binding("ops-automation-admin", "cluster-admin", crb["subjects"], uid=log.uuid(),
                                        rv=log.rv(), created=rfc3339(t + 20))
        self.note("setup-binding", log.request(t + 20, alice, "create",
                                               ref("clusterrolebindings", group="rbac.authorization.k8s.io"),
                                               req=crb, resp=stored, code=201))

    def probes(self, t: float) -> None:
        log = self.log
        curl = "curl/8.5.0"
        for resource, ns in (("secrets", "kube-system"), ("secrets", ""), ("pods", ""), ("nodes", ""),
                             ("serviceaccounts", "kube-system"), ("configmaps", "kube-system"),
                             ("pods", "kube-system"), ("namespaces", "")):
            objref = ref(resource, ns)
            self.note("probe-401", log.unauthenticated(t, ATTACKER_IP, curl, "list", uri_for(objref), objref))
            t += self.rng.uniform(0.5, 2)
        anon = Identity("system:anonymous", ["system:unauthenticated"], ATTACKER_IP, curl,
                        reason='RBAC: allowed by ClusterRoleBinding "system:public-info-viewer" of ClusterRole '
                               '"system:public-info-viewer" to Group "system:unauthenticated"')
        log.request(t, anon, "get", uri="/version")
        for resource, ns in (("secrets", "kube-system"), ("pods", ""), ("configmaps", "kube-system"),
                             ("secrets", ""), ("serviceaccounts", "kube-system"), ("nodes", "")):
            t += self.rng.uniform(0.5, 2)
            where = f'in the namespace "{ns}"' if ns else "at the cluster scope"
            self.note("probe-403", log.request(
                t, anon, "list", ref(resource, ns), code=403,
                message=f'{resource} is forbidden: User "system:anonymous" cannot list resource "{resource}" '
                        f'in API group "" {where}'))

    def csr(self, t: float) -> None:
        c, log = self.c, self.log
        dave = c.dave.at(ip=ATTACKER_IP)
        for i, uri in enumerate(("/api?timeout=32s", "/apis?timeout=32s")):
            log.request(t + i * 0.03, dave, "get", uri=uri)
        review = {"kind": "SelfSubjectRulesReview", "apiVersion": "authorization.k8s.io/v1",
                  "metadata": {"creationTimestamp": None}, "spec": {"namespace": "shop"}, "status": {}}
        log.request(t + 5, dave, "create", ref("selfsubjectrulesreviews", group="authorization.k8s.io"), req=review,
                    code=201)
        log.request(t + 30, dave, "list", ref("certificatesigningrequests", group=CSR_GROUP), code=403,
                    message='certificatesigningrequests.certificates.k8s.io is forbidden: User "dave@example.com" '
                            'cannot list resource "certificatesigningrequests" in API group "certificates.k8s.io" '
                            'at the cluster scope')
        t += 120
        pem = make_csr(private_key(self.rng), "evil-admin", ["system:masters"])
        name, signer, usages, secs = self.facts.csr_name, "kubernetes.io/kube-apiserver-client", ["client auth"], 31536000
        uid = log.uuid()
        req = o.csr({"name": name, "creationTimestamp": None}, b64(pem), signer, usages, seconds=secs)
        who = {"username": dave.username, "groups": dave.groups}
        md = {"name": name, "uid": uid, "resourceVersion": log.rv(), "creationTimestamp": rfc3339(t)}
        self.note("csr-create", log.request(t, dave, "create", ref("certificatesigningrequests", group=CSR_GROUP),
                                            req=req, resp=o.csr(md, b64(pem), signer, usages, seconds=secs, user=who),
                                            code=201))
        csr_ref = ref("certificatesigningrequests", name=name, group=CSR_GROUP)
        log.request(t + 20, dave, "get", csr_ref, resp=o.csr(md, b64(pem), signer, usages, seconds=secs, user=who))
        # 71 min: alice approves it by hand.
        t = 4260.37
        alice = self.c.alice
        log.request(t - 25, alice, "list", ref("certificatesigningrequests", group=CSR_GROUP), query="limit=500")
        cond = o.condition("Approved", "KubectlApprove", "This CSR was approved by kubectl certificate approve.",
                           rfc3339(t))
        approved = o.csr(md, b64(pem), signer, usages, seconds=secs, user=who, status={"conditions": [cond]})
        log.request(t - 0.3, alice, "get", csr_ref)
        self.note("csr-approve", log.request(t, alice, "update", dict(csr_ref, subresource="approval", uid=uid),
                                             req=approved, resp=approved))
        issued = self.ca.sign(pem, T0 + timedelta(seconds=t + 0.4), secs)
        signed = o.csr(md, b64(pem), signer, usages, seconds=secs, user=who,
                       status={"conditions": [cond], "certificate": b64(issued.pem)})
        self.note("csr-sign", log.request(t + 0.4, c.controller("certificate-controller"), "update",
                                          dict(csr_ref, subresource="status", uid=uid, resourceVersion=log.rv()),
                                          req=signed, resp=signed))
        log.request(t + 41, dave, "get", csr_ref, resp=signed)
        self.facts.cert_credential_id, self.facts.cert_serial = issued.credential_id, issued.serial

    def masters(self, t: float) -> None:
        """The certificate at work: cluster-wide Secrets, a cluster-admin binding, a root shell on a node."""
        log = self.log
        evil = Identity("evil-admin", ["system:masters", "system:authenticated"], ATTACKER_IP, KUBECTL_LINUX,
                        extra={"authentication.kubernetes.io/credential-id": [self.facts.cert_credential_id]})
        for i, uri in enumerate(("/api?timeout=32s", "/apis?timeout=32s")):
            self.note("cert-used", log.request(t + i * 0.03, evil, "get", uri=uri))
        t += 15
        self.note("secrets-list", log.request(t, evil, "list", ref("secrets"), query="limit=500",
                                              resp=self.all_secrets()))
        for resource, group in (("namespaces", ""), ("nodes", ""), ("pods", ""), ("serviceaccounts", ""),
                                ("configmaps", ""), ("deployments", "apps"), ("daemonsets", "apps"),
                                ("clusterroles", "rbac.authorization.k8s.io"),
                                ("validatingwebhookconfigurations", "admissionregistration.k8s.io"),
                                ("mutatingwebhookconfigurations", "admissionregistration.k8s.io"),
                                ("customresourcedefinitions", "apiextensions.k8s.io")):
            t += self.rng.uniform(0.3, 2.5)
            log.request(t, evil, "list", ref(resource, group=group), query="limit=500")
        t += 20
        log.request(t, evil, "list", ref("clusterrolebindings", group="rbac.authorization.k8s.io"), query="limit=500")
        crb = o.cluster_role_binding(self.facts.binding, "cluster-admin",
                                     [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io",
                                       "name": "dave@example.com"}])
        stored = o.cluster_role_binding(self.facts.binding, "cluster-admin", crb["subjects"], uid=log.uuid(),
                                        rv=log.rv(), created=rfc3339(t + 30))
        self.note("binding", log.request(t + 30, evil, "create",
                                         ref("clusterrolebindings", group="rbac.authorization.k8s.io"),
                                         req=crb, resp=stored, code=201))
        t += 90
        self.privileged_pod(t, evil)

    def privileged_pod(self, t: float, evil: Identity) -> None:
        log, name = self.log, self.facts.pod
        node = self.c.node("demo-control-plane")
        spec = o.pod(o.meta(name, "kube-system"),
                     [o.container("debugger", "docker.io/library/alpine:3.20", command=["sleep", "infinity"],
                                  volumeMounts=[{"name": "host-root", "mountPath": "/host"}],
                                  securityContext={"privileged": True}, stdin=True, tty=True)],
                     volumes=[{"name": "host-root", "hostPath": {"path": "/", "type": ""}}],
                     nodeName=node.name, hostNetwork=True, hostPID=True,
                     tolerations=[{"operator": "Exists"}])
        self.note("privileged-pod", log.request(t, evil, "create", ref("pods", "kube-system"), req=spec, code=201,
                                                annotations=PSA))
        uid = log.uuid()
        for dt in (1.1, 4.7):
            log.request(t + dt, node.kubelet_at(t), "patch", ref("pods", "kube-system", name, sub="status", uid=uid))
        exec_ref = ref("pods", "kube-system", name, sub="exec")
        self.note("exec", log.request(
            t + 30, evil, "get", exec_ref, code=101, duration=self.rng.uniform(200, 400),
            query="command=chroot&command=%2Fhost&command=sh&container=debugger&stdin=true&stdout=true&tty=true"))
        self.note("exec-create", log.request(
            t + 320, evil.at(ua="kubectl/v1.28.4 (linux/amd64) kubernetes/bae2c62"), "create", exec_ref, code=101,
            duration=self.rng.uniform(1, 3),
            query="command=cat&command=%2Fhost%2Fetc%2Fkubernetes%2Fpki%2Fca.key&container=debugger&stderr=true"
                  "&stdout=true"))

    def all_secrets(self) -> dict[str, Any]:
        log, plant = self.log, self.planted.append
        values = {"aws-access-key-id": "AKIAKTDEMO7PLANTED42", "aws-secret-access-key": "kt+demo/Planted/Secret9Xq"}
        boot = {"token-id": "k7d3x9", "token-secret": "p4q8r2t6v1w5y3z7",
                "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true"}
        argo = {"admin.password": "$2a$10$ktDemoPlantedBcryptHashValue0123456789abcdefghi",
                "server.secretkey": "kt-demo-argocd-server-key-Lw93"}
        for v in (*values.values(), boot["token-secret"], *argo.values()):
            plant(v)
        items = [
            o.secret(o.meta("etcd-backup-s3", "kube-system", uid=log.uuid(), rv=log.rv(), created="2025-11-02T08:14:51Z"),
                     values),
            o.secret(o.meta("bootstrap-token-k7d3x9", "kube-system", uid=log.uuid(), rv=log.rv(),
                            created="2026-03-13T16:40:02Z"), boot, kind_type="bootstrap.kubernetes.io/token"),
            o.secret(o.meta("argocd-secret", "argocd", uid=log.uuid(), rv=log.rv(), created="2025-10-21T11:02:40Z"),
                     argo),
            o.secret(o.meta("db-credentials", "shop", uid=log.uuid(), rv=log.rv(), created="2026-01-20T14:03:11Z"),
                     {"username": "shop", "password": "Pg-demo-Secr3t-7Hq2xW"}),
        ]
        for item in items:
            item.pop("kind"), item.pop("apiVersion")
        return {"kind": "SecretList", "apiVersion": "v1", "metadata": {"resourceVersion": log.rv()}, "items": items}

    def token(self, t: float) -> None:
        """A two-year token (persistence) for the cluster-admin service account, then its use from a new
        address."""
        log = self.log
        evil = Identity("evil-admin", ["system:masters", "system:authenticated"], ATTACKER_IP, KUBECTL_LINUX,
                        extra={"authentication.kubernetes.io/credential-id": [self.facts.cert_credential_id]})
        jti, secs = self.c.uuid(), 2 * 31536000
        iat = EPOCH + int(t)
        token = jwt(self.rng, bound_token_claims(jti=jti, namespace="kube-system", sa="ops-automation",
                                                 sa_uid=self.sa_uid, iat=iat, exp=iat + secs, audiences=API_AUDIENCE),
                    kid="demo-sa-key-1")
        self.planted.append(token)
        self.facts.token_jti, self.facts.token = jti, token
        resp = o.token_request(API_AUDIENCE, secs, token=token, expires=rfc3339(t + secs),
                               md={"name": "ops-automation", "namespace": "kube-system", "creationTimestamp": rfc3339(t)})
        self.note("token-request", log.request(
            t, evil, "create", ref("serviceaccounts", "kube-system", "ops-automation", sub="token"),
            req=o.token_request(None, secs), resp=resp, code=201,
            annotations={"authentication.kubernetes.io/issued-credential-id": f"JTI={jti}"}))
        ops = self.ops.with_credential(f"JTI={jti}")
        # `kubectl auth whoami --token …` from the attacker's box, then the token moves to a new address.
        whoami = {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                  "metadata": {"creationTimestamp": None}, "status": {"userInfo": {}}}
        log.request(t + 25, ops.at(ip=ATTACKER_IP, ua=KUBECTL_LINUX), "create",
                    ref("selfsubjectreviews", group="authentication.k8s.io"), req=whoami, code=201)
        t += 200
        self.note("token-used", log.request(t, ops, "list", ref("nodes"), query="limit=500"))
        backup = o.secret(o.meta("etcd-backup-s3", "kube-system", uid=log.uuid(), rv=log.rv()),
                          {"aws-access-key-id": "AKIAKTDEMO7PLANTED42",
                           "aws-secret-access-key": "kt+demo/Planted/Secret9Xq"})
        log.request(t + 12, ops, "get", ref("secrets", "kube-system", "etcd-backup-s3"), resp=backup)
        self.legacy_secret(t + 60, ops)
        t += 150
        log.request(t, ops, "list", ref("events", "kube-system"), query="limit=500")
        for _ in range(3):
            t += self.rng.uniform(1, 4)
            log.request(t, ops, "delete", ref("events", "kube-system", f"{self.facts.pod}.{suffix(self.rng, 16)}"))
        self.note("events-deleted", log.request(t + 5, ops, "deletecollection", ref("events", "kube-system")))

    def legacy_secret(self, t: float, ops: Identity) -> None:
        """``kind: Secret, type: kubernetes.io/service-account-token``: a token that never expires."""
        log, name = self.log, self.facts.legacy_secret
        md = o.meta(name, "kube-system", annotations={"kubernetes.io/service-account.name": "ops-automation"})
        req = o.secret(md, kind_type="kubernetes.io/service-account-token")
        uid = log.uuid()
        stored_md = dict(md, uid=uid, resourceVersion=log.rv(), creationTimestamp=rfc3339(t))
        self.note("legacy-secret", log.request(t, ops, "create", ref("secrets", "kube-system"), req=req,
                                               resp=o.secret(stored_md, kind_type="kubernetes.io/service-account-token"),
                                               code=201))
        claims = {"iss": "kubernetes/serviceaccount", "kubernetes.io/serviceaccount/namespace": "kube-system",
                  "kubernetes.io/serviceaccount/secret.name": name,
                  "kubernetes.io/serviceaccount/service-account.name": "ops-automation",
                  "kubernetes.io/serviceaccount/service-account.uid": self.sa_uid,
                  "sub": "system:serviceaccount:kube-system:ops-automation"}
        token = jwt(self.rng, claims, kid="demo-sa-key-1")
        self.planted.append(token)
        self.facts.legacy_token = token
        filled_md = dict(stored_md, annotations={"kubernetes.io/service-account.name": "ops-automation",
                                                 "kubernetes.io/service-account.uid": self.sa_uid},
                         resourceVersion=log.rv())
        filled = o.secret(filled_md, {"ca.crt": "-----BEGIN CERTIFICATE-----\nMIIC...\n-----END CERTIFICATE-----\n",
                                      "namespace": "kube-system", "token": token},
                          kind_type="kubernetes.io/service-account-token")
        tokens_controller = self.c.kcm.at(ua=self.c.kcm.ua.replace("leader-election", "tokens-controller"))
        log.request(t + 0.2, tokens_controller, "update", ref("secrets", "kube-system", name, uid=uid), req=filled,
                    resp=filled)
        log.request(t + 20, ops, "get", ref("secrets", "kube-system", name), resp=filled)

    def legacy_use(self, t: float) -> None:
        log, name = self.log, self.facts.legacy_secret
        legacy = {"authentication.k8s.io/legacy-token": "system:serviceaccount:kube-system:ops-automation",
                  "authentication.k8s.io/legacy-token-manual-secret": name}
        ops = self.ops.at(ua="python-requests/2.31.0")
        self.note("legacy-used", log.request(t, ops, "list", ref("namespaces"), annotations=legacy))
        label = {"metadata": {"labels": {"kubernetes.io/legacy-token-last-used": rfc3339(t)[:10]}}}
        log.request(t + 0.01, self.c.apiserver, "patch", ref("secrets", "kube-system", name), req=label)
        log.request(t + 3, ops, "list", ref("configmaps", "kube-system"), annotations=legacy)
