"""Write a commented audit policy that covers CIS 3.2.2 and everything kubetrail's detections and
credential inventory need, at one of three volumes.

* ``minimal``: every security class at the level it needs, bodies only where a detection reads
  them, the most noise dropped;
* ``recommended`` (default): as minimal, plus full request+response for RBAC, admission and CRD
  changes;
* ``forensic``: as recommended, plus responses for workload writes and every other write, and
  Events writes kept.

Invariant (tested): every profile lints with no finding at ``warn`` or above, so no leak.
Rules are data (``_BLOCKS``) rendered by hand so the YAML keeps its comments.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PROFILES = ("minimal", "recommended", "forensic")
DEFAULT_PROFILE = "recommended"

WRITE_VERBS = ["create", "update", "patch", "delete", "deletecollection"]
_ALL = frozenset(PROFILES)


@dataclass(frozen=True)
class _Block:
    comment: str
    rule: dict[str, Any]
    profiles: frozenset[str] = _ALL
    level: Callable[[str], str] | None = None  # per-profile level; otherwise rule["level"]


def _by_profile(minimal: str, recommended: str, forensic: str) -> Callable[[str], str]:
    return {"minimal": minimal, "recommended": recommended, "forensic": forensic}.get


def _gr(group: str, *resources: str) -> dict[str, Any]:
    return {"group": group, "resources": list(resources)}


_BLOCKS: tuple[_Block, ...] = (
    _Block("Noise: health checks and the version probe (read-only, unauthenticated load balancers).",
           {"level": "None", "nonResourceURLs": ["/healthz*", "/livez*", "/readyz*", "/version"]}),
    _Block("Noise: kube-proxy watching the service topology.",
           {"level": "None", "users": ["system:kube-proxy"], "verbs": ["get", "list", "watch"],
            "resources": [_gr("", "endpoints", "services", "services/status", "nodes"),
                          _gr("discovery.k8s.io", "endpointslices")]}),
    _Block("Noise: kubelets reading their Node and the service topology. Their Secret and Pod reads stay.",
           {"level": "None", "userGroups": ["system:nodes"], "verbs": ["get", "list", "watch"],
            "resources": [_gr("", "nodes", "nodes/status", "services", "endpoints")]}),
    _Block("Noise: node heartbeats and control-plane leader election (Leases).",
           {"level": "None", "userGroups": ["system:nodes"], "verbs": ["get", "update", "patch"],
            "resources": [_gr("coordination.k8s.io", "leases")]}),
    _Block("", {"level": "None", "users": ["system:kube-controller-manager", "system:kube-scheduler",
                                           "system:cloud-controller-manager", "system:apiserver"],
                "verbs": ["get", "update", "patch"], "namespaces": ["kube-system"],
                "resources": [_gr("coordination.k8s.io", "leases")]}),
    _Block("Noise: the apiserver checking namespaces exist.",
           {"level": "None", "users": ["system:apiserver"], "verbs": ["get"],
            "resources": [_gr("", "namespaces", "namespaces/status", "namespaces/finalize")]}),
    _Block("Noise: Event objects being written. Their deletion (covering tracks) stays recorded.",
           {"level": "None", "verbs": ["create", "update", "patch"],
            "resources": [_gr("", "events"), _gr("events.k8s.io", "events")]},
           frozenset({"minimal", "recommended"})),
    _Block("TokenRequest by kubelets (pod token refresh, high volume): Metadata still carries the\n"
           "authentication.kubernetes.io/issued-credential-id annotation (the token's JTI).",
           {"level": "Metadata", "userGroups": ["system:nodes"], "resources": [_gr("", "serviceaccounts/token")]}),
    _Block("TokenRequest by everyone else: the request body (audiences, expirationSeconds, bound object)\n"
           "is safe. Never RequestResponse: the response carries the bearer token.",
           {"level": "Request", "resources": [_gr("", "serviceaccounts/token")]}),
    _Block("CIS 3.2.2: Secrets, ConfigMaps and TokenReviews at Metadata only (their bodies are secrets).",
           {"level": "Metadata", "resources": [_gr("", "secrets", "configmaps"),
                                               _gr("authentication.k8s.io", "tokenreviews")]}),
    _Block("Credential issuance: the CSR lifecycle with bodies. Only public material (CSR PEM, issued\n"
           "certificate); the response names generateName'd CSRs and carries spec.username/groups.",
           {"level": "RequestResponse", "verbs": WRITE_VERBS,
            "resources": [_gr("certificates.k8s.io", "certificatesigningrequests",
                              "certificatesigningrequests/approval", "certificatesigningrequests/status",
                              "podcertificaterequests", "podcertificaterequests/status")]}),
    _Block("CIS 3.2.2: exec, attach, port-forward and proxies, every verb (WebSocket exec is `get`).\n"
           "ResponseStarted stays on, so the session start is recorded.",
           {"level": "Metadata",
            "resources": [_gr("", "pods/exec", "pods/attach", "pods/portforward", "pods/proxy",
                              "services/proxy", "nodes/proxy")]}),
    _Block("RBAC and ServiceAccount changes with bodies (who granted what to whom).",
           {"level": "RequestResponse", "verbs": WRITE_VERBS,
            "resources": [_gr("rbac.authorization.k8s.io", "roles", "clusterroles", "rolebindings",
                              "clusterrolebindings"), _gr("", "serviceaccounts")]},
           level=_by_profile("Request", "RequestResponse", "RequestResponse")),
    _Block("Admission webhooks, admission policies and CRDs: changes with bodies.",
           {"level": "RequestResponse", "verbs": WRITE_VERBS,
            "resources": [_gr("admissionregistration.k8s.io", "validatingwebhookconfigurations",
                              "mutatingwebhookconfigurations", "validatingadmissionpolicies",
                              "validatingadmissionpolicybindings", "mutatingadmissionpolicies",
                              "mutatingadmissionpolicybindings"),
                          _gr("apiextensions.k8s.io", "customresourcedefinitions")]},
           level=_by_profile("Request", "RequestResponse", "RequestResponse")),
    _Block("CIS 3.2.2: workload writes with request bodies (privileged pods, hostPath, images,\n"
           "ephemeral debug containers, DaemonSets, CronJobs).",
           {"level": "Request", "verbs": WRITE_VERBS,
            "resources": [_gr("", "pods", "pods/ephemeralcontainers", "replicationcontrollers"),
                          _gr("apps", "deployments", "daemonsets", "statefulsets", "replicasets"),
                          _gr("batch", "jobs", "cronjobs")]},
           level=_by_profile("Request", "Request", "RequestResponse")),
    _Block("Forensic: every other write with request and response (sensitive resources are above).",
           {"level": "RequestResponse", "verbs": WRITE_VERBS}, frozenset({"forensic"})),
    _Block("Everything else at Metadata: who did what, when, from where, with which result.",
           {"level": "Metadata"}),
)


def _flow(value: Any) -> str:
    return json.dumps(value)


def _render_rule(rule: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for i, (key, value) in enumerate(rule.items()):
        lead = "- " if i == 0 else "  "
        if key == "resources":
            lines.append(f"{lead}resources:")
            for gr in value:
                lines.append(f"  - group: {_flow(gr['group'])}")
                lines.append(f"    resources: {_flow(gr['resources'])}")
        elif key == "level":
            lines.append(f"{lead}level: {value}")
        else:
            lines.append(f"{lead}{key}: {_flow(value)}")
    return lines


def generate(profile: str = DEFAULT_PROFILE) -> str:
    """The policy YAML for ``profile`` (one of ``PROFILES``), comments included."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}")
    out = [
        f"# Kubernetes audit policy generated by `kubetrail policy generate --profile {profile}`.",
        "# Covers CIS 3.2.1/3.2.2 and what kubetrail's detections and credential inventory need.",
        "# Check it with `kubetrail policy lint FILE`; see what it keeps with `kubetrail policy simulate`.",
        "# Install: --audit-policy-file=/etc/kubernetes/audit/policy.yaml --audit-log-path=... (or a webhook).",
        "# First matching rule wins; users/userGroups match the authenticated (not impersonated) user.",
        "apiVersion: audit.k8s.io/v1",
        "kind: Policy",
        "# Managed fields are large and say nothing about intent.",
        "omitManagedFields: true",
        "# RequestReceived duplicates ResponseComplete. ResponseStarted stays: it is the only stage of a",
        "# rejected (401) request and marks the start of exec/attach/port-forward sessions.",
        'omitStages: ["RequestReceived"]',
        "rules:",
    ]
    for block in _BLOCKS:
        if profile not in block.profiles:
            continue
        rule = dict(block.rule)
        if block.level is not None:
            rule["level"] = block.level(profile)
        if block.comment:
            out.extend(f"# {line}" for line in block.comment.splitlines())
        out.extend(_render_rule(rule))
    return "\n".join(out) + "\n"
