"""The security-relevant request classes that ``lint`` evaluates and ``simulate`` counts.

Each class is a handful of synthetic requests, built the way ``RequestInfoFactory`` would derive
them (a create has no name; a Namespace is its own namespace; WebSocket exec is ``get``), plus:

* ``need``: the level kubetrail's detections and credential inventory need; below it the events
  are "shallow" (recorded without the body that matters).
* ``most``: the highest safe level; above it the events leak secrets (CIS 3.2.2: Secrets,
  ConfigMaps and TokenReviews at Metadata only; TokenRequest responses carry the bearer token).
* ``stage``: the stage that must survive ``omitStages`` (``ResponseStarted`` for 401s, where it is
  the only stage, and for exec/attach/port-forward, where it marks the session start).
"""

from __future__ import annotations

from dataclasses import dataclass

from kubetrail.posture.policy.match import RequestAttrs, UserInfo
from kubetrail.posture.policy.model import Level

ALICE = UserInfo("alice", ("developers", "system:authenticated"))
NODE = UserInfo("system:node:node-1", ("system:nodes", "system:authenticated"))
BOOTSTRAP = UserInfo("system:bootstrap:abcdef", ("system:bootstrappers", "system:authenticated"))
KCM = UserInfo("system:kube-controller-manager", ("system:authenticated",))
RS_CONTROLLER = UserInfo("system:serviceaccount:kube-system:replicaset-controller",
                         ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"))
ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))
IMPERSONATOR = UserInfo("ci-deployer", ("system:authenticated",))

WRITES = ("create", "update", "patch")
ALL_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
READS = ("get", "list", "watch")

RR = Level.REQUEST_RESPONSE
MD = Level.METADATA
RQ = Level.REQUEST


@dataclass(frozen=True)
class RequestClass:
    id: str
    title: str
    requests: tuple[RequestAttrs, ...]
    need: Level
    most: Level = RR
    stage: str = "ResponseComplete"
    cis: str = ""


def _req(verbs: tuple[str, ...], group: str, resource: str, sub: str = "", ns: str = "default",
         name: str = "x", users: tuple[UserInfo | None, ...] = (ALICE,)) -> tuple[RequestAttrs, ...]:
    """Requests for every verb × user; collection verbs (create, list, watch, deletecollection) carry no name."""
    nameless = ("create", "list", "watch", "deletecollection")
    return tuple(RequestAttrs(u, v, True, group, resource, sub, ns, "" if v in nameless and not sub else name)
                 for v in verbs for u in users)


def _all(*parts: tuple[RequestAttrs, ...]) -> tuple[RequestAttrs, ...]:
    return tuple(r for p in parts for r in p)


CSR = "certificates.k8s.io"
RBAC = "rbac.authorization.k8s.io"
ADM = "admissionregistration.k8s.io"

CLASSES: tuple[RequestClass, ...] = (
    RequestClass("csr-create", "CSR created (generateName: name only in the response)",
                 _req(("create",), CSR, "certificatesigningrequests", ns="", users=(ALICE, NODE, BOOTSTRAP)), RR),
    RequestClass("csr-approve", "CSR approved or denied",
                 _req(("update", "patch"), CSR, "certificatesigningrequests", "approval", ns="", users=(ALICE, KCM)),
                 RQ),
    RequestClass("csr-issue", "CSR signed (status.certificate written)",
                 _req(("update", "patch"), CSR, "certificatesigningrequests", "status", ns="", users=(KCM,)), RQ),
    RequestClass("tokenrequest", "TokenRequest by a user or workload (audiences, bound object)",
                 _req(("create",), "", "serviceaccounts", "token", name="build-bot"), RQ, RQ),
    RequestClass("tokenrequest-kubelet", "TokenRequest by a kubelet (pod token refresh)",
                 _req(("create",), "", "serviceaccounts", "token", name="default", users=(NODE,)), MD, RQ),
    RequestClass("legacy-token-secret", "Secret created (legacy service-account token)",
                 _req(("create",), "", "secrets"), MD, MD, cis="3.2.2"),
    RequestClass("secrets-read", "Secrets read (get/list/watch)", _req(READS, "", "secrets"), MD, MD, cis="3.2.2"),
    RequestClass("secrets-write", "Secrets changed or deleted",
                 _req(("update", "patch", "delete", "deletecollection"), "", "secrets"), MD, MD, cis="3.2.2"),
    RequestClass("configmaps", "ConfigMaps read or changed", _req(ALL_VERBS, "", "configmaps"), MD, MD, cis="3.2.2"),
    RequestClass("tokenreviews", "TokenReviews (carry the reviewed token)",
                 _req(("create",), "authentication.k8s.io", "tokenreviews", ns="", users=(ALICE, KCM)), MD, MD,
                 cis="3.2.2"),
    RequestClass("exec-create", "pods/exec over SPDY (verb create)", _req(("create",), "", "pods", "exec"), MD,
                 stage="ResponseStarted", cis="3.2.2"),
    RequestClass("exec-get", "pods/exec over WebSocket (verb get)", _req(("get",), "", "pods", "exec"), MD,
                 stage="ResponseStarted", cis="3.2.2"),
    RequestClass("attach-create", "pods/attach (create)", _req(("create",), "", "pods", "attach"), MD,
                 stage="ResponseStarted"),
    RequestClass("attach-get", "pods/attach (get, WebSocket)", _req(("get",), "", "pods", "attach"), MD,
                 stage="ResponseStarted"),
    RequestClass("portforward-create", "pods/portforward (create)", _req(("create",), "", "pods", "portforward"),
                 MD, stage="ResponseStarted", cis="3.2.2"),
    RequestClass("portforward-get", "pods/portforward (get, WebSocket)", _req(("get",), "", "pods", "portforward"),
                 MD, stage="ResponseStarted", cis="3.2.2"),
    RequestClass("pods-proxy", "pods/proxy (every verb)", _req(ALL_VERBS[:1] + WRITES + ("delete",), "", "pods",
                                                                  "proxy"), MD, cis="3.2.2"),
    RequestClass("services-proxy", "services/proxy (every verb)",
                 _req(ALL_VERBS[:1] + WRITES + ("delete",), "", "services", "proxy"), MD, cis="3.2.2"),
    RequestClass("nodes-proxy", "nodes/proxy: kubelet API (exec, logs, metrics)",
                 _req(("get", "create", "update", "patch", "delete"), "", "nodes", "proxy", ns="", name="node-1"), MD),
    RequestClass("rbac-roles", "Roles and ClusterRoles changed",
                 _all(_req(WRITES, RBAC, "roles"), _req(WRITES, RBAC, "clusterroles", ns="")), RQ),
    RequestClass("rbac-bindings", "RoleBindings and ClusterRoleBindings changed",
                 _all(_req(WRITES, RBAC, "rolebindings"), _req(WRITES, RBAC, "clusterrolebindings", ns="")), RQ),
    RequestClass("rbac-deletion", "RBAC objects deleted",
                 _all(_req(("delete",), RBAC, "clusterrolebindings", ns=""), _req(("delete",), RBAC, "roles")), MD),
    RequestClass("admission-webhooks", "Admission webhooks and policies changed",
                 _all(*(_req(WRITES + ("delete",), ADM, r, ns="") for r in
                        ("validatingwebhookconfigurations", "mutatingwebhookconfigurations",
                         "validatingadmissionpolicies", "validatingadmissionpolicybindings"))), RQ),
    RequestClass("privileged-pod", "Pod created (privileged, hostPath, hostNetwork are in the body)",
                 _req(("create",), "", "pods", users=(ALICE, RS_CONTROLLER)), RQ, cis="3.2.2"),
    RequestClass("pod-modification", "Pods changed or deleted", _req(("update", "patch", "delete"), "", "pods"), MD,
                 cis="3.2.2"),
    RequestClass("deployments", "Deployments created or changed",
                 _all(_req(WRITES, "apps", "deployments"), _req(("delete",), "apps", "deployments")), RQ,
                 cis="3.2.2"),
    RequestClass("daemonsets", "DaemonSets created or changed", _req(WRITES, "apps", "daemonsets"), RQ),
    RequestClass("cronjobs", "CronJobs created or changed", _req(WRITES, "batch", "cronjobs"), RQ),
    RequestClass("ephemeral-containers", "Ephemeral containers added (kubectl debug)",
                 _req(("update", "patch"), "", "pods", "ephemeralcontainers"), RQ),
    RequestClass("events-deletion", "Events deleted (covering tracks)",
                 _all(_req(("delete", "deletecollection"), "", "events"),
                      _req(("delete", "deletecollection"), "events.k8s.io", "events")), MD),
    RequestClass("namespace-deletion", "Namespaces deleted",
                 _req(("delete",), "", "namespaces", ns="team-a", name="team-a"), MD),
    RequestClass("anonymous", "Anonymous requests (system:anonymous)",
                 _all(_req(("list", "get"), "", "pods", ns="", users=(ANONYMOUS,)),
                      (RequestAttrs(ANONYMOUS, "get", False, path="/apis"),)), MD),
    RequestClass("unauthenticated", "Failed authentication (401, only stage ResponseStarted)",
                 _all(_req(("list",), "", "secrets", users=(None,)),
                      (RequestAttrs(None, "get", False, path="/api"),)), MD, stage="ResponseStarted"),
    RequestClass("impersonation", "Requests made through impersonation (policy sees the impersonator)",
                 _all(_req(("get",), "", "secrets", users=(IMPERSONATOR,)),
                      _req(("create",), RBAC, "clusterrolebindings", ns="", users=(IMPERSONATOR,))), MD),
    RequestClass("coredns-configmap", "CoreDNS ConfigMap changed (DNS hijack)",
                 _req(("update", "patch"), "", "configmaps", ns="kube-system", name="coredns"), MD, MD),
    RequestClass("aws-auth", "aws-auth ConfigMap changed (EKS IAM mapping)",
                 _req(("update", "patch"), "", "configmaps", ns="kube-system", name="aws-auth"), MD, MD),
)


def describe(a: RequestAttrs) -> str:
    """A request in kubectl-ish words, for lint and explain output."""
    who = "unauthenticated" if a.user is None else a.user.name
    if not a.resource_request:
        return f"{who} {a.verb} {a.path}"
    gr = f"{a.combined_resource}.{a.api_group}" if a.api_group else a.combined_resource
    where = f" -n {a.namespace}" if a.namespace else ""
    return f"{who} {a.verb} {gr}{'/' + a.name if a.name else ''}{where}"
