"""Real, reproducible key material for the demo: a cluster CA, CSRs, signed certificates, JWTs.

The CSR in ``spec.request`` and the certificate in ``status.certificate`` are genuine PEM built with
``cryptography``, so the credential inventory can parse the subject and compute the X.509 credential
id (``X509SHA256=`` + SHA-256 of the certificate's DER) exactly as the apiserver's x509 authenticator
does. To keep the demo deterministic, private keys are derived from the seeded RNG (P-256 scalars) and
signatures use deterministic ECDSA (RFC 6979); where the installed ``cryptography``/OpenSSL lacks
that, Ed25519 (deterministic by design) is used instead.

Service-account tokens are JWT-shaped (header, real claims, random signature bytes): nothing here
ever validates them, and kubetrail must redact them on ingest.
"""

from __future__ import annotations

import base64
import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _deterministic_ecdsa() -> bool:
    key = ec.derive_private_key(1234567, ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "probe")])
    try:
        x509.CertificateSigningRequestBuilder().subject_name(name).sign(
            key, hashes.SHA256(), ecdsa_deterministic=True)  # type: ignore[call-arg]
    except Exception:  # noqa: BLE001 - TypeError (old cryptography) or UnsupportedAlgorithm (old OpenSSL)
        return False
    return True


_ECDSA_OK = _deterministic_ecdsa()


def private_key(rng: random.Random) -> PrivateKey:
    """A key pair derived from ``rng`` (the same seed gives the same key)."""
    if _ECDSA_OK:
        return ec.derive_private_key(rng.randrange(1, 2**255), ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))


def _sign(builder: Any, key: PrivateKey) -> Any:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return builder.sign(key, None)
    return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)


def _name(cn: str, orgs: list[str]) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name(attrs + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_csr(key: PrivateKey, cn: str, orgs: list[str]) -> bytes:
    """A PEM ``CERTIFICATE REQUEST`` for ``CN=cn, O=orgs`` (what ``openssl req`` would write)."""
    csr = _sign(x509.CertificateSigningRequestBuilder().subject_name(_name(cn, orgs)), key)
    return bytes(csr.public_bytes(serialization.Encoding.PEM))


@dataclass
class Issued:
    """A certificate the demo CA signed, with what the credential inventory should find."""

    pem: bytes
    sha256: str  # lowercase hex of SHA-256(DER): the X509SHA256 credential id
    serial: int
    not_after: datetime

    @property
    def credential_id(self) -> str:
        return f"X509SHA256={self.sha256}"


class CertificateAuthority:
    """The cluster CA (``/etc/kubernetes/pki/ca.crt``) as kube-controller-manager's signer uses it."""

    def __init__(self, rng: random.Random, created: datetime) -> None:
        self.rng = rng
        self.key = private_key(rng)
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
        builder = (x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
                   .public_key(self.key.public_key()).serial_number(rng.getrandbits(63) + 1)
                   .not_valid_before(created).not_valid_after(created + timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
        self.cert = _sign(builder, self.key)

    def sign(self, csr_pem: bytes, now: datetime, seconds: int, client_auth: bool = True) -> Issued:
        """Sign like the kcm csrsigning controller: backdated 5 minutes, client-auth usage."""
        csr = x509.load_pem_x509_csr(csr_pem)
        not_before = now - timedelta(minutes=5)
        not_after = now + timedelta(seconds=seconds)
        usage = [ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else [ExtendedKeyUsageOID.SERVER_AUTH]
        builder = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(self.name)
                   .public_key(csr.public_key()).serial_number(self.rng.getrandbits(127) + 1)
                   .not_valid_before(not_before).not_valid_after(not_after)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                                content_commitment=False, data_encipherment=False,
                                                key_agreement=False, key_cert_sign=False, crl_sign=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
        cert = _sign(builder, self.key)
        der = cert.public_bytes(serialization.Encoding.DER)
        return Issued(pem=bytes(cert.public_bytes(serialization.Encoding.PEM)),
                      sha256=hashlib.sha256(der).hexdigest(), serial=cert.serial_number, not_after=not_after)


def b64(data: bytes) -> str:
    """How Kubernetes puts ``[]byte`` fields (CSR ``spec.request``, ``status.certificate``) in JSON."""
    return base64.b64encode(data).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(rng: random.Random, claims: dict[str, Any], kid: str = "") -> str:
    """A JWT-shaped service-account token (RS256 header, the claims, 256 bytes of 'signature')."""
    header = {"alg": "RS256", "kid": kid} if kid else {"alg": "RS256"}
    return ".".join((_b64url(orjson.dumps(header)), _b64url(orjson.dumps(claims)), _b64url(rng.randbytes(256))))


def bound_token_claims(*, jti: str, namespace: str, sa: str, sa_uid: str, iat: int, exp: int,
                       audiences: list[str], pod: tuple[str, str] | None = None,
                       node: tuple[str, str] | None = None, warnafter: int | None = None) -> dict[str, Any]:
    """The claims the apiserver puts into a TokenRequest token (``pkg/serviceaccount/claims.go``)."""
    k8s: dict[str, Any] = {"namespace": namespace}
    if node:
        k8s["node"] = {"name": node[0], "uid": node[1]}
    if pod:
        k8s["pod"] = {"name": pod[0], "uid": pod[1]}
    k8s["serviceaccount"] = {"name": sa, "uid": sa_uid}
    if warnafter:
        k8s["warnafter"] = warnafter
    return {"aud": audiences, "exp": exp, "iat": iat, "iss": "https://kubernetes.default.svc.cluster.local",
            "jti": jti, "kubernetes.io": k8s, "nbf": iat, "sub": f"system:serviceaccount:{namespace}:{sa}"}
