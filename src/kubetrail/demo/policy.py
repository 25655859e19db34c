"""The audit policy of the demo cluster, as a file and as the level each request gets under it.

The policy is a typical hand-written one with a classic mistake: Secrets and TokenRequests are
logged at ``RequestResponse``, so Secret values and freshly minted tokens reach the audit log
(kubetrail redacts them before storing; ``kubetrail policy lint`` points the mistake out).
``level_for`` applies the rules in order, first match wins, exactly as the apiserver does for
the requests the demo makes; the demo writes the YAML beside the log so users can lint it.
"""

from __future__ import annotations

import fnmatch
from typing import Any

POLICY_YAML = """\
# Audit policy of the kubetrail demo cluster (kube-apiserver --audit-policy-file).
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  # Health checks are noise.
  - level: None
    nonResourceURLs: ["/healthz*", "/livez*", "/readyz*"]
  # Credentials and RBAC: keep request and response bodies (this leaks Secret values and tokens).
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["secrets", "serviceaccounts/token"]
      - group: "certificates.k8s.io"
        resources: ["certificatesigningrequests", "certificatesigningrequests/approval",
                    "certificatesigningrequests/status"]
      - group: "rbac.authorization.k8s.io"
        resources: ["clusterroles", "clusterrolebindings", "roles", "rolebindings"]
  # High-volume or body-less: metadata only.
  - level: Metadata
    resources:
      - group: "coordination.k8s.io"
        resources: ["leases"]
      - group: ""
        resources: ["pods/exec", "pods/attach", "pods/portforward", "pods/log", "pods/status",
                    "nodes/status", "events"]
  - level: Metadata
    verbs: ["get", "list", "watch"]
  # Writes: the request body.
  - level: Request
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
  - level: Metadata
"""

_RESPONSE = {
    "": {"secrets", "serviceaccounts/token"},
    "certificates.k8s.io": {"certificatesigningrequests", "certificatesigningrequests/approval",
                            "certificatesigningrequests/status"},
    "rbac.authorization.k8s.io": {"clusterroles", "clusterrolebindings", "roles", "rolebindings"},
}
_METADATA = {
    "coordination.k8s.io": {"leases"},
    "": {"pods/exec", "pods/attach", "pods/portforward", "pods/log", "pods/status", "nodes/status", "events"},
}
_WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def _matches(table: dict[str, set[str]], objref: dict[str, Any]) -> bool:
    resource = objref.get("resource", "")
    if objref.get("subresource"):
        resource = f"{resource}/{objref['subresource']}"
    return resource in table.get(objref.get("apiGroup", ""), set())


def level_for(verb: str, objref: dict[str, Any] | None, uri: str) -> str:
    """The level ``POLICY_YAML`` gives a request (resource requests have an ``objref``)."""
    if objref is None:
        path = uri.split("?", 1)[0]
        if any(fnmatch.fnmatchcase(path, pat) for pat in ("/healthz*", "/livez*", "/readyz*")):
            return "None"
        return "Metadata"
    if _matches(_RESPONSE, objref):
        return "RequestResponse"
    if _matches(_METADATA, objref) or verb in ("get", "list", "watch"):
        return "Metadata"
    if verb in _WRITES:
        return "Request"
    return "Metadata"
