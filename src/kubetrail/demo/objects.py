"""Kubernetes objects as they appear in ``requestObject``/``responseObject`` of the demo's events.

Shapes follow the v1 APIs closely enough for detection rules (Falco's ``ka.req.pod.*`` fields), the
redaction stage (Secret ``data``/``stringData``, the last-applied annotation, TokenRequest
``status.token``) and the credential inventory (CSR ``spec.request``/``status.certificate``) to find
what they look for; fields nobody reads are left out to keep the log readable.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson


def meta(name: str = "", namespace: str = "", *, uid: str = "", rv: str = "", created: str | None = None,
         labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
         generate_name: str = "", owner: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if name:
        out["name"] = name
    if generate_name:
        out["generateName"] = generate_name
    if namespace:
        out["namespace"] = namespace
    if uid:
        out["uid"] = uid
    if rv:
        out["resourceVersion"] = rv
    out["creationTimestamp"] = created
    if labels:
        out["labels"] = labels
    if annotations:
        out["annotations"] = annotations
    if owner:
        out["ownerReferences"] = [owner]
    return out


def owner(kind: str, name: str, uid: str, api_version: str = "apps/v1") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True,
            "blockOwnerDeletion": True}


def container(name: str, image: str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "image": image}
    out.update(extra)
    out.setdefault("resources", {})
    out["terminationMessagePath"] = "/dev/termination-log"
    out["terminationMessagePolicy"] = "File"
    out["imagePullPolicy"] = "IfNotPresent"
    return out


def pod(md: dict[str, Any], containers: list[dict[str, Any]], *, sa: str = "default",
        volumes: list[dict[str, Any]] | None = None, **spec_extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if volumes:
        spec["volumes"] = volumes
    spec["containers"] = containers
    spec.update({"restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                 "serviceAccountName": sa, "securityContext": {}, "schedulerName": "default-scheduler"})
    spec.update(spec_extra)
    return {"kind": "Pod", "apiVersion": "v1", "metadata": md, "spec": spec, "status": {}}


def b64s(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def secret(md: dict[str, Any], data: dict[str, str] | None = None, *, string_data: dict[str, str] | None = None,
           kind_type: str = "Opaque") -> dict[str, Any]:
    """A Secret; ``data`` values are given in clear and base64-encoded here, as the API carries them."""
    out: dict[str, Any] = {"kind": "Secret", "apiVersion": "v1", "metadata": md}
    if data is not None:
        out["data"] = {k: b64s(v) for k, v in data.items()}
    if string_data is not None:
        out["stringData"] = dict(string_data)
    out["type"] = kind_type
    return out


def last_applied(obj: dict[str, Any]) -> str:
    """The ``kubectl.kubernetes.io/last-applied-configuration`` annotation kubectl apply writes."""
    return orjson.dumps(obj).decode() + "\n"


def lease(name: str, namespace: str, holder: str, renew: str, duration: int, *, uid: str, rv: str,
          transitions: int = 0) -> dict[str, Any]:
    spec: dict[str, Any] = {"holderIdentity": holder, "leaseDurationSeconds": duration, "renewTime": renew}
    if transitions:
        spec["leaseTransitions"] = transitions
    return {"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": rv}, "spec": spec}


def k8s_event(namespace: str, name: str, involved: dict[str, Any], reason: str, message: str, source: str,
              when: str, kind_type: str = "Normal") -> dict[str, Any]:
    return {"kind": "Event", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "involvedObject": involved, "reason": reason, "message": message, "source": {"component": source},
            "firstTimestamp": when, "lastTimestamp": when, "count": 1, "type": kind_type,
            "eventTime": None, "reportingComponent": source, "reportingInstance": ""}


def binding(name: str, namespace: str, node: str, uid: str) -> dict[str, Any]:
    return {"kind": "Binding", "apiVersion": "v1", "metadata": {"name": name, "namespace": namespace, "uid": uid,
                                                               "creationTimestamp": None},
            "target": {"kind": "Node", "name": node}}


def cluster_role_binding(name: str, role: str, subjects: list[dict[str, str]], *, uid: str = "",
                         rv: str = "", created: str | None = None) -> dict[str, Any]:
    return {"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": meta(name, uid=uid, rv=rv, created=created), "subjects": subjects,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}}


def token_request(audiences: list[str] | None, seconds: int, bound: dict[str, str] | None = None, *,
                  token: str = "", expires: str | None = None, md: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"audiences": audiences, "expirationSeconds": seconds}
    if bound:
        spec["boundObjectRef"] = bound
    return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": md or {"creationTimestamp": None}, "spec": spec,
            "status": {"token": token, "expirationTimestamp": expires}}


def csr(md: dict[str, Any], request_b64: str, signer: str, usages: list[str], *, seconds: int | None = None,
        user: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"request": request_b64, "signerName": signer}
    if seconds is not None:
        spec["expirationSeconds"] = seconds
    spec["usages"] = usages
    if user:
        spec.update(user)
    return {"kind": "CertificateSigningRequest", "apiVersion": "certificates.k8s.io/v1", "metadata": md,
            "spec": spec, "status": status or {}}


def condition(kind: str, reason: str, message: str, when: str) -> dict[str, Any]:
    return {"type": kind, "status": "True", "reason": reason, "message": message, "lastUpdateTime": when,
            "lastTransitionTime": when}
