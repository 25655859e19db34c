"""Test PKI, JWT-shaped tokens and audit events for the credential inventory tests.

Everything is built here with ``cryptography``: a CA, CSRs with any subject, certificates signed
from them, and tokens shaped like the apiserver's (header.claims.signature, base64url).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import secrets
import uuid
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubetrail.credentials.consumer import CredentialConsumer
from kubetrail.credentials.report import list_credentials, show
from kubetrail.record import Decoded, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.store import open_store

T0 = dt.datetime(2025, 6, 1, 10, 0, 0, tzinfo=dt.UTC)
CSR_GROUP = "certificates.k8s.io"
KUBECTL = "kubectl/v1.33.0 (linux/amd64) kubernetes/abc"


def ts(seconds: float) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ns_at(seconds: float) -> int:
    return int((T0 + dt.timedelta(seconds=seconds)).timestamp()) * 1_000_000_000 + \
        int(round((seconds % 1) * 1e6)) * 1000


# -- PKI ---------------------------------------------------------------------------------------------
class CA:
    def __init__(self, name: str = "kubernetes") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.name = subject
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(T0 - dt.timedelta(days=1)).not_valid_after(T0 + dt.timedelta(days=3650))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))

    def sign(self, csr: x509.CertificateSigningRequest, days: float = 365, at: float = 0) -> x509.Certificate:
        start = T0 + dt.timedelta(seconds=at)
        builder = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(self.name)
                   .public_key(csr.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days)))
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            builder = builder.add_extension(san.value, critical=False)
        except x509.ExtensionNotFound:
            pass
        return builder.sign(self.key, hashes.SHA256())


def make_csr(cn: str, orgs: tuple[str, ...] = (), dns: tuple[str, ...] = (),
             ips: tuple[str, ...] = ()) -> x509.CertificateSigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] + [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o)
                                                             for o in orgs]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i))
                                                                     for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def pem_b64(obj: x509.CertificateSigningRequest | x509.Certificate, chain: list[x509.Certificate] = ()) -> str:
    """What JSON carries for a Go []byte of PEM: base64 of the PEM text."""
    pem = obj.public_bytes(serialization.Encoding.PEM) + b"".join(c.public_bytes(serialization.Encoding.PEM)
                                                                   for c in chain)
    return base64.b64encode(pem).decode()


def der_sha256(cert: x509.Certificate) -> str:
    import hashlib

    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: dict[str, Any]) -> str:
    """A token shaped like the apiserver's: RS256 header, the claims, a random 256-byte signature."""
    header = {"alg": "RS256", "kid": "k1"}
    return ".".join([_b64url(json.dumps(header).encode()), _b64url(json.dumps(claims).encode()),
                     _b64url(secrets.token_bytes(256))])


def sa_claims(ns: str, sa: str, jti: str, iat: float, exp: float, pod: str = "", node: str = "",
              warnafter: float | None = None, aud: list[str] | None = None) -> dict[str, Any]:
    kio: dict[str, Any] = {"namespace": ns, "serviceaccount": {"name": sa, "uid": str(uuid.uuid4())}}
    if pod:
        kio["pod"] = {"name": pod, "uid": str(uuid.uuid4())}
    if node:
        kio["node"] = {"name": node, "uid": str(uuid.uuid4())}
    if warnafter is not None:
        kio["warnafter"] = ns_at(warnafter) // 1_000_000_000
    return {"aud": aud or ["https://kubernetes.default.svc.cluster.local"], "exp": ns_at(exp) // 1_000_000_000,
            "iat": ns_at(iat) // 1_000_000_000, "iss": "https://kubernetes.default.svc.cluster.local", "jti": jti,
            "kubernetes.io": kio, "nbf": ns_at(iat) // 1_000_000_000, "sub": f"system:serviceaccount:{ns}:{sa}"}


# -- events ------------------------------------------------------------------------------------------
def event(*, verb: str, resource: str, at: float, user: str, groups: list[str] | None = None,
          cred_id: str = "", extra: dict[str, list[str]] | None = None, api_group: str = "", namespace: str = "",
          name: str = "", subresource: str = "", code: int = 200, level: str = "Metadata",
          stage: str = "ResponseComplete", ip: str = "10.0.0.1", ua: str = KUBECTL, audit_id: str = "",
          request: Any = None, response: Any = None, annotations: dict[str, str] | None = None,
          impersonate: tuple[str, list[str]] | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"resource": resource, "apiVersion": "v1"}
    for k, v in (("namespace", namespace), ("name", name), ("subresource", subresource), ("apiGroup", api_group)):
        if v:
            ref[k] = v
    u: dict[str, Any] = {"username": user, "groups": groups if groups is not None else ["system:authenticated"]}
    ex = dict(extra or {})
    if cred_id:
        ex["authentication.kubernetes.io/credential-id"] = [cred_id]
    if ex:
        u["extra"] = ex
    base = f"/apis/{api_group}/v1" if api_group else "/api/v1"
    uri = base + (f"/namespaces/{namespace}" if namespace else "") + f"/{resource}" + (f"/{name}" if name else "") + \
        (f"/{subresource}" if subresource else "")
    ev: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level, "auditID": audit_id or str(uuid.uuid4()),
        "stage": stage, "requestURI": uri, "verb": verb, "user": u, "sourceIPs": [ip], "userAgent": ua,
        "objectRef": ref, "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": ts(at), "stageTimestamp": ts(at + 0.01),
        "annotations": {"authorization.k8s.io/decision": "allow", **(annotations or {})},
    }
    if impersonate:
        ev["impersonatedUser"] = {"username": impersonate[0], "groups": impersonate[1]}
    if request is not None and level in ("Request", "RequestResponse"):
        ev["requestObject"] = request
    if response is not None and level == "RequestResponse":
        ev["responseObject"] = response
    return ev


def use(user: str, at: float, cred_id: str = "", *, ip: str = "10.0.0.1", verb: str = "list",
        resource: str = "pods", code: int = 200, groups: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    return event(verb=verb, resource=resource, at=at, user=user, cred_id=cred_id, ip=ip, code=code,
                 groups=groups, namespace=kw.pop("namespace", "default"), **kw)


def csr_create(csr: x509.CertificateSigningRequest, *, user: str, groups: list[str], at: float, name: str,
               generate: bool = True, signer: str = "kubernetes.io/kube-apiserver-client",
               usages: tuple[str, ...] = ("client auth",), expiration_seconds: int | None = None,
               level: str = "RequestResponse", **kw: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"request": pem_b64(csr), "signerName": signer, "usages": list(usages)}
    if expiration_seconds:
        spec["expirationSeconds"] = expiration_seconds
    md = {"generateName": "csr-"} if generate else {"name": name}
    req = {"kind": "CertificateSigningRequest", "apiVersion": "certificates.k8s.io/v1", "metadata": md,
           "spec": spec, "status": {}}
    imp = kw.get("impersonate")
    resp = {**req, "metadata": {**md, "name": name, "uid": str(uuid.uuid4())},
            "spec": {**spec, "username": imp[0] if imp else user, "groups": imp[1] if imp else groups}}
    return event(verb="create", resource="certificatesigningrequests", api_group=CSR_GROUP, at=at, user=user,
                 groups=groups, name="" if generate else name, level=level, request=req, response=resp, code=201,
                 **kw)


def csr_approve(name: str, *, user: str, at: float, approve: bool = True, level: str = "RequestResponse",
                reason: str = "KubectlApprove", groups: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    cond = {"type": "Approved" if approve else "Denied", "status": "True", "reason": reason,
            "message": "This CSR was approved by kubectl certificate approve.", "lastUpdateTime": ts(at)}
    obj = {"kind": "CertificateSigningRequest", "metadata": {"name": name}, "status": {"conditions": [cond]}}
    return event(verb="update", resource="certificatesigningrequests", api_group=CSR_GROUP, subresource="approval",
                 name=name, at=at, user=user, groups=groups, level=level, request=obj, response=obj, **kw)


SIGNER = "system:serviceaccount:kube-system:certificate-controller"


def csr_issue(name: str, cert: x509.Certificate | None, *, at: float, level: str = "RequestResponse",
              chain: list[x509.Certificate] = (), **kw: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": [{"type": "Approved", "status": "True"}]}
    if cert is not None:
        status["certificate"] = pem_b64(cert, list(chain))
    obj = {"kind": "CertificateSigningRequest", "metadata": {"name": name}, "status": status}
    return event(verb="update", resource="certificatesigningrequests", api_group=CSR_GROUP, subresource="status",
                 name=name, at=at, user=kw.pop("user", SIGNER), level=level, request=obj, response=obj, **kw)


def token_request(ns: str, sa: str, *, user: str, at: float, token: str | None = None, jti: str = "",
                  expiration_seconds: int = 3600, bound: dict[str, str] | None = None,
                  audiences: list[str] | None = None, level: str = "RequestResponse",
                  annotate_jti: bool = True, **kw: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"audiences": audiences, "expirationSeconds": expiration_seconds}
    if bound:
        spec["boundObjectRef"] = {"apiVersion": "v1", **bound}
    req = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "metadata": {"creationTimestamp": None},
           "spec": spec, "status": {"token": "", "expirationTimestamp": None}}
    resp = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": sa, "namespace": ns, "creationTimestamp": ts(at)},
            "spec": {**spec, "audiences": audiences or ["https://kubernetes.default.svc.cluster.local"]},
            "status": {"token": token or "", "expirationTimestamp": ts(at + expiration_seconds)[:19] + "Z"}}
    ann = {"authentication.kubernetes.io/issued-credential-id": f"JTI={jti}"} if jti and annotate_jti else {}
    return event(verb="create", resource="serviceaccounts", subresource="token", namespace=ns, name=sa, at=at,
                 user=user, level=level, request=req, response=resp, annotations=ann, code=201, **kw)


class Cluster:
    """A store and a credential consumer; ``feed`` redacts, stores and consumes events in order."""

    def __init__(self, data_dir: str, location: str | None = None) -> None:
        self.data_dir = data_dir
        os.makedirs(data_dir, exist_ok=True)  # detect.yaml, keys: also when the store lives elsewhere
        self.store = open_store(location or data_dir, data_dir=data_dir)
        self.cli_args = ["--data", data_dir, *(["--store", location] if location else [])]
        self.consumer = CredentialConsumer(self.store, lateness_secs=0)  # applied as fed (order tests feed it)
        self.n = 0

    def records(self, *events: dict[str, Any]) -> list[Any]:
        out = []
        for ev in events:
            self.n += 1
            out.append(to_record(Decoded(event=ev, format="raw", position=f"test:{self.n}"),
                                 SourceRef(cluster="test", node="n1", stream="audit")))
        return out

    def feed(self, *events: dict[str, Any], consume: bool = True) -> list[Any]:
        result = self.store.append(self.records(*events))
        if consume:
            self.consumer.consume(result.stored, self.store)
        return result.stored

    def show(self, ident: str) -> dict[str, Any]:
        return show(self.store, ident, now_ns=ns_at(0))

    def list(self, identities: bool = False, **kw: Any) -> list[dict[str, Any]]:
        """Credentials; with ``identities`` also the ``unknown`` identities no credential explains."""
        kw.setdefault("now_ns", ns_at(0))
        found = list_credentials(self.store, **kw)
        return found if identities or kw.get("kind") == "unknown" else [e for e in found if e["kind"] != "unknown"]

    def flags(self, ident: str) -> dict[str, dict[str, Any]]:
        return {f["flag"]: f for f in self.show(ident)["flags"]}

    def close(self) -> None:
        self.store.close()
