"""GKE Cloud Logging ``LogEntry`` (protoPayload ``AuditLog``) → audit.k8s.io Event.

The mapping is lossy and the Event says so in ``lossy``: GKE keeps no groups, no ``user.extra``
(so no credential id), no stage (every entry is treated as ``ResponseComplete``) and reports
google.rpc codes that are mapped back to HTTP codes.

``methodName`` is ``io.k8s.<group>.<version>.<resource>[.<subresource>].<verb>`` with group ``core``
for the core group; non-resource requests are ``io.k8s.<verb>`` with ``resourceName`` the path.
"""

from __future__ import annotations

import re
from typing import Any

# google.rpc.Code → HTTP status, as the gRPC/HTTP mapping defines it.
RPC_TO_HTTP = {
    0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400,
    10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
}
_VERBS = {"create", "update", "patch", "delete", "deletecollection", "get", "list", "watch",
          "connect", "proxy", "approve", "sign", "bind", "escalate", "impersonate"}
LOSSY = ["groups", "extra", "stage", "code:rpc"]
_SUFFIXLESS_GROUPS = {"apps", "batch", "policy", "autoscaling", "extensions"}
_SHOWABLE = re.compile(r"[A-Za-z][A-Za-z0-9./_-]{0,40}")


def shown(value: Any) -> str:
    """An input value as a reject reason may quote it. Reasons go to rejects.jsonl and stderr, and
    the value may be anything an attacker put there (a JWT in a dict-valued ``kind``), so only a
    short identifier-like string is quoted; anything else is named by its type."""
    if isinstance(value, str) and _SHOWABLE.fullmatch(value) and not value.startswith(("ey", "ew")):
        return repr(value)
    return f"a value of type {type(value).__name__}"


def _split_method(method: str) -> tuple[str, str, str, str, str] | None:
    """(group, version, resource, subresource, verb) or None for non-resource methods."""
    parts = method.split(".")
    if len(parts) < 3 or parts[0] != "io" or parts[1] != "k8s":
        return None
    rest = parts[2:]
    verb = rest[-1]
    body = rest[:-1]
    if not body:
        return None
    # The version is the first element shaped like v1, v1beta1, v2alpha1 …
    vi = next((i for i, p in enumerate(body) if p[:1] == "v" and p[1:2].isdigit()), None)
    if vi is None or vi + 1 >= len(body):
        return None
    # Java-package order: io.k8s.authorization.rbac.v1 is rbac.authorization.k8s.io.
    group = ".".join(reversed(body[:vi]))
    group = "" if group == "core" else group
    if group and group not in _SUFFIXLESS_GROUPS:
        group = f"{group}.k8s.io"
    version = body[vi]
    resource = body[vi + 1]
    sub = ".".join(body[vi + 2:])
    return group, version, resource, sub, verb


def _object_ref(resource_name: str, group: str, version: str, resource: str, sub: str) -> dict[str, Any]:
    ref: dict[str, Any] = {"resource": resource, "apiVersion": version}
    if group:
        ref["apiGroup"] = group
    if sub:
        ref["subresource"] = sub
    segs = resource_name.split("/")
    if "namespaces" in segs:
        i = segs.index("namespaces")
        if i + 1 < len(segs) and not (i + 2 == len(segs) and resource == "namespaces"):
            ref["namespace"] = segs[i + 1]
    if resource in segs:
        j = len(segs) - 1 - segs[::-1].index(resource)
        if j + 1 < len(segs):
            ref["name"] = segs[j + 1]
    elif resource == "namespaces" and "namespaces" in segs:
        i = segs.index("namespaces")
        if i + 1 < len(segs):
            ref["name"] = segs[i + 1]
    return ref


def gke_to_event(entry: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str], str]:
    """Returns (event, lossy fields, reason when event is None)."""
    pp = entry.get("protoPayload")
    if not isinstance(pp, dict) or "AuditLog" not in str(pp.get("@type", "")):
        return None, [], "protoPayload is not a google.cloud.audit.AuditLog"
    if pp.get("serviceName") not in (None, "k8s.io"):
        return None, [], f"serviceName {shown(pp.get('serviceName'))} is not k8s.io"
    method = pp.get("methodName")
    if not isinstance(method, str) or not method.startswith("io.k8s."):
        return None, [], "methodName is not an io.k8s.* method"
    auth = pp.get("authenticationInfo") if isinstance(pp.get("authenticationInfo"), dict) else {}
    meta = pp.get("requestMetadata") if isinstance(pp.get("requestMetadata"), dict) else {}
    op = entry.get("operation") if isinstance(entry.get("operation"), dict) else {}
    labels = entry.get("labels") if isinstance(entry.get("labels"), dict) else {}
    rname = str(pp.get("resourceName") or "")
    ts = entry.get("timestamp") or entry.get("receiveTimestamp")
    status = pp.get("status") if isinstance(pp.get("status"), dict) else {}
    rpc = status.get("code", 0) if status else 0
    code = RPC_TO_HTTP.get(rpc, 500) if isinstance(rpc, int) else 500
    if code == 200 and method.endswith(".create"):
        code = 201
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse" if "response" in pp else ("Request" if "request" in pp else "Metadata"),
        "auditID": str(op.get("id") or entry.get("insertId") or ""),
        "stage": "ResponseComplete",
        "user": {"username": str(auth.get("principalEmail", ""))},
        "sourceIPs": [meta["callerIp"]] if isinstance(meta.get("callerIp"), str) else [],
        "userAgent": str(meta.get("callerSuppliedUserAgent", "")),
        "responseStatus": {"code": code, **({"message": status["message"]} if "message" in status else {})},
        "annotations": {k: v for k, v in labels.items() if isinstance(v, str)},
    }
    if isinstance(ts, str) and ts:
        event["requestReceivedTimestamp"] = ts
        event["stageTimestamp"] = ts
    split = _split_method(method)
    if split is None:
        verb = method.rsplit(".", 1)[-1]
        event["verb"] = verb
        event["requestURI"] = "/" + rname.lstrip("/")
    else:
        group, version, resource, sub, verb = split
        first = rname.split("/", 1)[0]
        if "." in first and first.count("/") == 0 and rname.count("/") >= 2:
            group = first  # the resourceName spells the real API group
        if verb not in _VERBS:
            return None, [], f"unknown verb {shown(verb)} in methodName"
        event["verb"] = verb
        event["objectRef"] = _object_ref(rname, group, version, resource, sub)
        event["requestURI"] = "/" + rname.lstrip("/")
    for src, dst in (("request", "requestObject"), ("response", "responseObject")):
        if isinstance(pp.get(src), dict):
            body = {k: v for k, v in pp[src].items() if k != "@type"}
            event[dst] = body
    if "impersonatedUser" in auth or "serviceAccountDelegationInfo" in auth:
        event["impersonatedUser"] = {"username": str(auth.get("impersonatedUser", ""))}
    gke = entry.get("resource", {}).get("labels", {}) if isinstance(entry.get("resource"), dict) else {}
    if isinstance(gke, dict) and gke.get("cluster_name"):
        event["annotations"]["kubetrail.dev/gke-cluster"] = str(gke["cluster_name"])
    return event, list(LOSSY), ""
