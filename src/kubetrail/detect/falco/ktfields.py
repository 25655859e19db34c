"""kubetrail's own fields (``kt.*``), for what Falco cannot see or gets wrong.

* ``kt.sourceip``: the *trusted* source IP, the last of ``sourceIPs`` (the apiserver appends the
  peer address; earlier entries come from ``X-Forwarded-For`` and are client-controlled).
* ``kt.user.serviceaccount``: NAME of a ``system:serviceaccount:NS:NAME`` user (else no value).
* ``kt.credential_id``: ``user.extra["authentication.kubernetes.io/credential-id"]`` (``JTI=…``,
  ``X509SHA256=…``); ``kt.user.extra[K]`` any extra value.
* ``kt.csr.*``: the CSR in ``requestObject.spec.request`` (base64 PEM) decoded with ``cryptography``.
* ``kt.token.claims[K]``: JWT claims the redact stage kept in the ``kubetrail.dev/token-claims``
  annotation; ``K`` is a ``/``-separated path (``kubernetes.io/serviceaccount/name``).
* ``kt.impuser.*``, ``kt.cluster``, ``kt.exec.*`` (from the request URI), ``kt.leaf_index``.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from kubetrail.detect.falco import jsonval
from kubetrail.detect.falco.context import MISSING, EventContext, Extracted, FieldSpec, get
from kubetrail.stages.redact import CLAIMS_ANNOTATION, scrub_text

CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"


def _strs(v: Any) -> list[str] | None:
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list):
        return None
    return [jsonval.text_of(x) for x in v] or None


def _sourceip(c: EventContext, _arg: str | None) -> Extracted:
    ips = c.ev.get("sourceIPs")
    return ips[-1] if isinstance(ips, list) and ips and isinstance(ips[-1], str) else None


def _extra(c: EventContext, arg: str | None) -> Extracted:
    return _strs(get(c.ev, "user", "extra", arg or ""))


def _serviceaccount(c: EventContext, _arg: str | None) -> Extracted:
    name = get(c.ev, "user", "username")
    if isinstance(name, str) and name.startswith("system:serviceaccount:") and name.count(":") == 3:
        return name.rsplit(":", 1)[1]
    return None


def _credential_id(c: EventContext, _arg: str | None) -> Extracted:
    vals = _strs(get(c.ev, "user", "extra", CREDENTIAL_ID))
    return vals[0] if vals else None


def _query(c: EventContext, key: str) -> list[str]:
    uri = c.ev.get("requestURI")
    if not isinstance(uri, str) or "?" not in uri:
        return []
    # Decoded values: what redaction finds in them goes again (the store keeps them encoded).
    return [scrub_text(v) for v in parse_qs(urlsplit(uri).query, keep_blank_values=True).get(key, [])]


def _exec_command(c: EventContext, _arg: str | None) -> Extracted:
    parts = _query(c, "command")
    return " ".join(parts) if parts else None


def _exec_container(c: EventContext, _arg: str | None) -> Extracted:
    parts = _query(c, "container")
    return parts[0] if parts else None


def _cluster(c: EventContext, _arg: str | None) -> Extracted:
    rec = c.record
    if rec is not None and getattr(rec.source, "cluster", ""):
        return str(rec.source.cluster)
    v = get(c.ev, "annotations", "cluster_name")
    return v if isinstance(v, str) else None


def _leaf_index(c: EventContext, _arg: str | None) -> Extracted:
    idx = getattr(c.record, "leaf_index", None) if c.record is not None else None
    return None if idx is None else str(idx)


def _record_key(c: EventContext, _arg: str | None) -> Extracted:
    return getattr(c.record, "key", None) if c.record is not None else None


def _csr(c: EventContext) -> dict[str, Any] | None:
    """Decoded CSR facts, parsed once per event."""
    if "csr" in c.cache:
        return c.cache["csr"]
    out: dict[str, Any] | None = None
    obj = c.ev.get("requestObject")
    req = get(obj, "spec", "request")
    if isinstance(req, str) and get(obj, "kind") in ("CertificateSigningRequest", MISSING):
        out = {"signer": get(obj, "spec", "signerName")}
        try:
            from cryptography import x509
            from cryptography.x509.oid import NameOID

            pem = base64.b64decode(req, validate=False)
            csr = x509.load_pem_x509_csr(pem)
            out["subject"] = csr.subject.rfc4514_string()
            out["cn"] = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
            out["groups"] = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
            try:
                san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                out["sans"] = [str(getattr(g, "value", g)) for g in san]
            except x509.ExtensionNotFound:
                out["sans"] = []
        except Exception:  # a broken CSR must not break detection; the fields are just missing
            out["subject"] = None
    c.cache["csr"] = out
    return out


def _csr_field(key: str, scalar: bool) -> Any:
    def ext(c: EventContext, _arg: str | None) -> Extracted:
        info = _csr(c)
        if info is None:
            return None
        v = info.get(key)
        if key == "signer":
            return v if isinstance(v, str) else None
        if not v:
            return None
        if scalar:
            return str(v[0]) if isinstance(v, list) else str(v)
        return [str(x) for x in v]

    return ext


def _claims(c: EventContext, arg: str | None) -> Extracted:
    raw = get(c.ev, "annotations", CLAIMS_ANNOTATION)
    if not isinstance(raw, str):
        return None
    try:
        claims = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if arg is None:
        return jsonval.compact(claims)
    cur: Any = claims
    for part in arg.split("/"):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return jsonval.text_of(cur)


KT_FIELDS = [
    FieldSpec("kt.sourceip", "trusted source IP: the last of sourceIPs", _sourceip),
    FieldSpec("kt.sourceips", "all sourceIPs", lambda c, a: _strs(c.ev.get("sourceIPs")), is_list=True),
    FieldSpec("kt.user.serviceaccount", "the service account's name when the user is one (system:serviceaccount:NS:NAME)",
              _serviceaccount),
    FieldSpec("kt.credential_id", "user.extra authentication.kubernetes.io/credential-id", _credential_id),
    FieldSpec("kt.user.extra", "a user.extra value", _extra, is_list=True, arg="key"),
    FieldSpec("kt.impuser.name", "impersonated user name",
              lambda c, a: (lambda v: v if isinstance(v, str) else None)(get(c.ev, "impersonatedUser", "username"))),
    FieldSpec("kt.impuser.groups", "impersonated groups",
              lambda c, a: _strs(get(c.ev, "impersonatedUser", "groups")), is_list=True),
    FieldSpec("kt.cluster", "cluster name (record source, else annotations.cluster_name)", _cluster),
    FieldSpec("kt.exec.command", "exec command from the request URI, words joined with spaces", _exec_command),
    FieldSpec("kt.exec.container", "exec/attach container from the request URI", _exec_container),
    FieldSpec("kt.leaf_index", "the record's trail leaf index", _leaf_index),
    FieldSpec("kt.key", "the record's key", _record_key),
    FieldSpec("kt.csr.subject", "CSR subject (RFC 4514)", _csr_field("subject", True)),
    FieldSpec("kt.csr.cn", "CSR subject common name", _csr_field("cn", True)),
    FieldSpec("kt.csr.groups", "CSR subject organizations (Kubernetes groups)", _csr_field("groups", False),
              is_list=True),
    FieldSpec("kt.csr.sans", "CSR subject alternative names", _csr_field("sans", False), is_list=True),
    FieldSpec("kt.csr.signer", "CSR spec.signerName", _csr_field("signer", True)),
    FieldSpec("kt.token.claims", "JWT claims kept by redaction (JSON), or one claim by path", _claims,
              arg="optkey"),
]
