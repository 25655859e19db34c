"""Decode the public key material that CSR events carry: ``spec.request`` and ``status.certificate``.

Both are PEM text that JSON carries as ``[]byte``, i.e. base64 of the PEM (audit-policy reference
§5.1). We accept that, plain PEM, and base64 of DER, because hand-written events vary. Nothing here
trusts the material: a CSR's self-signature is reported, not required, and a certificate chain is
never verified — we only need the *identity* fields and, for the issued certificate, the SHA-256 of
the leaf's DER, which is exactly what the apiserver's x509 authenticator puts in
``user.extra["authentication.kubernetes.io/credential-id"]`` as ``X509SHA256=<hex>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:  # imported where a CSR or certificate is decoded: ~20 ms that most commands never need
    from cryptography import x509

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----(.+?)-----END \1-----", re.S)


class Names(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Subject and subject-alternative names, as Kubernetes reads them (CN = user, O = groups)."""

    cn: str = ""
    orgs: list[str] = []
    dns: list[str] = []
    ips: list[str] = []
    emails: list[str] = []
    uris: list[str] = []


class CsrInfo(msgspec.Struct, kw_only=True):
    names: Names
    key: str = ""  # "RSA 2048", "EC secp256r1", "Ed25519"
    signature_valid: bool | None = None


class CertInfo(msgspec.Struct, kw_only=True):
    fingerprint: str  # lowercase hex SHA-256 of the leaf DER = the X509SHA256 credential id
    serial: str  # lowercase hex
    issuer: str  # RFC 4514
    names: Names
    not_before: int  # ns since the epoch
    not_after: int
    chain_length: int = 1


def _raw(value: str | bytes) -> bytes | None:
    """PEM or DER bytes from what an event holds (base64 of PEM, PEM, base64 of DER)."""
    data = value.encode() if isinstance(value, str) else value
    data = data.strip()
    if not data:
        return None
    if b"-----BEGIN" in data:
        return data
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return None


def _blocks(raw: bytes, label: bytes) -> list[bytes]:
    """DER of every PEM block with ``label`` (or the whole input when it is DER already)."""
    if b"-----BEGIN" not in raw:
        return [raw]
    out = []
    for m in _PEM_BLOCK.finditer(raw):
        if m.group(1) == label:
            try:
                out.append(base64.b64decode(b"".join(m.group(2).split())))
            except (binascii.Error, ValueError):
                continue
    return out


def _names(name: x509.Name, ext: x509.Extensions | None) -> Names:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cn = [str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [str(a.value) for a in name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    out = Names(cn=cn[0] if cn else "", orgs=orgs)
    if ext is not None:
        try:
            san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return out
        out.dns = [str(v) for v in san.get_values_for_type(x509.DNSName)]
        out.ips = [str(v) for v in san.get_values_for_type(x509.IPAddress)]
        out.emails = [str(v) for v in san.get_values_for_type(x509.RFC822Name)]
        out.uris = [str(v) for v in san.get_values_for_type(x509.UniformResourceIdentifier)]
    return out


def _key_label(key: object) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    return type(key).__name__


def decode_csr(value: str | bytes) -> CsrInfo | None:
    """A CSR's subject, SANs and key type; None when the value is not a CSR (redacted, truncated)."""
    raw = _raw(value)
    if raw is None:
        return None
    from cryptography import x509

    for der in _blocks(raw, b"CERTIFICATE REQUEST") or _blocks(raw, b"NEW CERTIFICATE REQUEST"):
        try:
            csr = x509.load_der_x509_csr(der)
            ext = csr.extensions
        except ValueError:
            continue
        try:
            key = _key_label(csr.public_key())
        except ValueError:
            key = ""
        return CsrInfo(names=_names(csr.subject, ext), key=key, signature_valid=csr.is_signature_valid)
    return None


def decode_certificate(value: str | bytes) -> CertInfo | None:
    """The leaf (first) certificate of a PEM chain; None when there is none."""
    raw = _raw(value)
    if raw is None:
        return None
    ders = _blocks(raw, b"CERTIFICATE")
    from cryptography import x509

    for der in ders[:1]:
        try:
            cert = x509.load_der_x509_certificate(der)
            ext = cert.extensions
        except ValueError:
            return None
        return CertInfo(
            fingerprint=hashlib.sha256(der).hexdigest(),
            serial=format(cert.serial_number, "x"),
            issuer=cert.issuer.rfc4514_string(),
            names=_names(cert.subject, ext),
            not_before=int(cert.not_valid_before_utc.timestamp()) * 1_000_000_000,
            not_after=int(cert.not_valid_after_utc.timestamp()) * 1_000_000_000,
            chain_length=len(ders),
        )
    return None
