"""Find the attack again in the store, with the queries an analyst would run.

Nothing here knows the answer: every step is a ``QueryFilters`` search over stored events plus a look
at the redacted body where the indexed fields are not enough (the subject inside a CSR, the role of a
binding, the security context of a pod). Later steps follow what earlier ones found, the way the
credential id links a certificate or token to its uses: the SHA-256 of a certificate issued for a
``system:masters`` CSR becomes the ``X509SHA256=`` id to search for, a minted token's
``issued-credential-id`` the ``JTI=`` one.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from kubetrail.record import Record
from kubetrail.store import QueryFilters, Store

ISSUED = "authentication.kubernetes.io/issued-credential-id"
LEGACY = "authentication.k8s.io/legacy-token"


@dataclass
class Step:
    title: str
    records: list[Record] = field(default_factory=list)  # one per request (first stage seen)


def _body(r: Record) -> dict[str, Any]:
    try:
        event = r.event()
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


def _get(obj: Any, *path: str) -> Any:
    for part in path:
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _requests(records: Iterable[Record], keep: Callable[[Record], bool] = lambda _r: True) -> list[Record]:
    seen: set[str] = set()
    out = []
    for r in records:
        ident = r.meta.audit_id or r.key
        if ident not in seen and keep(r):
            seen.add(ident)
            out.append(r)
    return out


def csr_subject(b64_pem: Any) -> tuple[str, list[str]] | None:
    """(CN, [O…]) of the PEM CSR in a CSR object's ``spec.request``."""
    try:
        csr = x509.load_pem_x509_csr(base64.b64decode(b64_pem))
    except (TypeError, ValueError):
        return None
    cn = [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return (cn[0] if cn else "", orgs)


def cert_credential_id(b64_pem: Any) -> str:
    """``X509SHA256=<hex>`` of the first certificate in ``status.certificate``."""
    try:
        cert = x509.load_pem_x509_certificate(base64.b64decode(b64_pem))
    except (TypeError, ValueError):
        return ""
    return "X509SHA256=" + hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _is_root_pod(r: Record) -> bool:
    spec = _get(_body(r), "requestObject", "spec") or {}
    host_root = any(_get(v, "hostPath", "path") == "/" for v in spec.get("volumes") or [])
    privileged = any(_get(c, "securityContext", "privileged") is True for c in spec.get("containers") or [])
    return host_root or privileged or spec.get("hostPID") is True


def hunt(store: Store) -> list[Step]:
    """The attack steps, in the order they happened, each with the requests that show it."""
    def q(keep: Callable[[Record], bool] = lambda _r: True, **filters: Any) -> list[Record]:
        return _requests(store.query(QueryFilters(**filters)), keep)

    steps = [
        Step("Failed authentication (401)", q(code=[401])),
        Step("Anonymous requests denied (403)", q(user=["system:anonymous"], code=[403])),
    ]
    masters_csrs = q(lambda r: "system:masters" in ((csr_subject(_get(_body(r), "requestObject", "spec", "request"))
                                                     or ("", []))[1]),
                     resource=["certificatesigningrequests"], verb=["create"])
    names = [r.meta.name for r in masters_csrs]
    steps.append(Step("CSR asking for O=system:masters", masters_csrs))
    steps.append(Step("...approved by a person", q(lambda r: not r.meta.user.startswith("system:"),
                                                   resource=["certificatesigningrequests"], subresource=["approval"],
                                                   name=names or ["-"])))
    signed = q(lambda r: bool(_get(_body(r), "requestObject", "status", "certificate")),
               resource=["certificatesigningrequests"], subresource=["status"], name=names or ["-"])
    steps.append(Step("...certificate issued", signed))
    cert_ids = [cert_credential_id(_get(_body(r), "requestObject", "status", "certificate")) for r in signed]
    steps.append(Step("...and used (credential id X509SHA256=…)", q(credential_id=[c for c in cert_ids if c] or ["-"])))
    steps.append(Step("Secrets listed cluster-wide", q(lambda r: not r.meta.namespace and (r.meta.code or 0) < 400,
                                                       resource=["secrets"], verb=["list"])))
    steps.append(Step("Bindings to cluster-admin", q(
        lambda r: _get(_body(r), "requestObject", "roleRef", "name") == "cluster-admin",
        resource=["clusterrolebindings", "rolebindings"], verb=["create", "update", "patch"])))
    steps.append(Step("Privileged pod / host filesystem", q(_is_root_pod, resource=["pods"], subresource=[""],
                                                            verb=["create"])))
    steps.append(Step("Exec into pods", q(resource=["pods"], subresource=["exec", "attach"])))
    minted = q(lambda r: not r.meta.user.startswith("system:node:"), resource=["serviceaccounts"],
               subresource=["token"], verb=["create"])
    steps.append(Step("Tokens minted by TokenRequest (not by a kubelet)", minted))
    jtis = [str(_get(_body(r), "annotations", ISSUED) or "") for r in minted]
    steps.append(Step("...and used (credential id JTI=…)", q(credential_id=[j for j in jtis if j] or ["-"])))
    legacy = q(lambda r: _get(_body(r), "requestObject", "type") == "kubernetes.io/service-account-token",
               resource=["secrets"], verb=["create"])
    steps.append(Step("Legacy service-account token Secrets created", legacy))
    accounts = [f"system:serviceaccount:{r.meta.namespace}:{sa}" for r in legacy
                if (sa := _get(_body(r), "requestObject", "metadata", "annotations",
                               "kubernetes.io/service-account.name"))]
    steps.append(Step("...and used (legacy-token annotation)", q(lambda r: bool(_get(_body(r), "annotations", LEGACY)),
                                                                 user=accounts or ["-"])))
    steps.append(Step("Events deleted", q(resource=["events"], verb=["delete", "deletecollection"])))
    return steps
