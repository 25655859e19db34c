"""The deep pass: Secrets nested anywhere, JWTs and keys in every shape, through the real hot path.

Each event goes through ``to_record`` (cheap pass, ``needs_deep_scan`` on the serialised body, deep
pass), so a shape the trigger misses fails here just as it would leak in production. The stored
body and every redaction path (also stored) are checked.
"""

from __future__ import annotations

import base64
import textwrap
from collections.abc import Callable

import orjson
import pytest

from kubetrail.record import Decoded, Record, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.stages.redact import (
    CLAIMS_ANNOTATION,
    LAST_APPLIED,
    REDACTED,
    contains_jwt,
    needs_deep_scan,
    redact_event,
)
from kubetrail.testing import make_event


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(claims: dict, header: bytes = b'{"alg":"RS256","kid":"k1"}', pad: bool = False) -> str:
    parts = [b64url(header), b64url(orjson.dumps(claims)), b64url(b"planted-signature-0123456789")]
    if pad:
        parts = [p + "=" * (-len(p) % 4) for p in parts]
    return ".".join(parts)


TOKEN = jwt({"sub": "system:serviceaccount:ns:sa", "jti": "jti-deep-1", "exp": 1714560000})
PW = base64.b64encode(b"planted-nested-password").decode()
SD = "planted-nested-stringdata"
KEY_BODY = "MIIEpAIBAAKCAQEAplantedRSAkeyBodyForTests0123456789"
RSA_KEY = f"-----BEGIN RSA PRIVATE KEY-----\n{KEY_BODY}\n-----END RSA PRIVATE KEY-----\n"
CERT = "-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAKHHIG2y0Z0WMA0GCSqGSIb3DQEBCwUAMA0xCzAJBgNVBAYTAlVT\n" \
       "-----END CERTIFICATE-----\n"


def secret(**over: object) -> dict:
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": {"pw": PW},
           "stringData": {"user": SD}}
    obj.update(over)
    return obj


def stored(event: dict) -> Record:
    return to_record(Decoded(event, "event", "t:1"), SourceRef())


def assert_clean(event: dict, *needles: str) -> Record:
    """``needles`` are in neither the stored body nor a redaction path; returns the record."""
    rec = stored(event)
    written = rec.body + orjson.dumps([r.path for r in rec.redactions])
    for needle in needles:
        assert needle.encode() not in written, f"{needle[:24]}… leaked"
    return rec


# 1. Secrets nested anywhere -------------------------------------------------------------------

def test_admission_review_object_old_object_and_patch() -> None:
    """An AdmissionReview about a Secret (aggregated API, webhook proxy) loses the data of both
    objects and the base64 patch the webhook answered with."""
    patch = base64.b64encode(orjson.dumps([{"op": "add", "path": "/data/x", "value": PW}])).decode()
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Secret"},
                          "resource": {"group": "", "version": "v1", "resource": "secrets"},
                          "object": secret(), "oldObject": secret(stringData=None)},
              "response": {"uid": "u", "allowed": True, "patchType": "JSONPatch", "patch": patch}}
    ev = make_event(verb="create", resource="admissionreviews", api_group="proxy.example.io",
                    requestObject=review, responseObject=review)
    rec = assert_clean(ev, PW, SD, patch)
    assert rec.event()["requestObject"]["request"]["object"]["metadata"]["name"] == "db"


def test_list_in_list_and_template_objects() -> None:
    """A Secret in a List in a List, and in an OpenShift Template's objects, data and stringData."""
    nested = {"kind": "List", "apiVersion": "v1", "items": [{"kind": "List", "items": [secret()]}]}
    assert_clean(make_event(verb="create", resource="configmaps", requestObject=nested), PW, SD)
    template = {"kind": "Template", "apiVersion": "template.openshift.io/v1", "metadata": {"name": "t"},
                "objects": [{"kind": "ConfigMap", "data": {"a": "b"}}, secret()]}
    rec = assert_clean(make_event(verb="create", resource="templates", api_group="template.openshift.io",
                                  requestObject=template, responseObject=template), PW, SD)
    assert rec.event()["requestObject"]["objects"][0]["data"] == {"a": "b"}, "non-Secrets are untouched"


@pytest.mark.parametrize("kind", ["List", "Template"])
def test_last_applied_of_a_non_secret_holding_a_secret(kind: str) -> None:
    """kubectl apply of a List (or Template) of Secrets repeats them in the last-applied annotation:
    their values go, the applied object stays (issue 10 item 7: over-redaction harms forensics)."""
    applied = orjson.dumps({"kind": kind, "items": [secret()], "objects": [secret()]}).decode()
    obj = {"kind": kind, "metadata": {"name": "x", "annotations": {LAST_APPLIED: applied, "other": "keep"}}}
    rec = assert_clean(make_event(verb="patch", resource="templates", requestObject=obj), PW, SD)
    ann = rec.event()["requestObject"]["metadata"]["annotations"]
    kept = orjson.loads(ann[LAST_APPLIED])
    assert ann["other"] == "keep" and kept["items"][0]["metadata"] == {"name": "db"}
    assert kept["items"][0]["data"] == {"pw": REDACTED} and kept["objects"][0]["stringData"] == {"user": REDACTED}
    assert {r.what for r in rec.redactions} == {"secret-data"}
    assert f"requestObject.metadata.annotations.{LAST_APPLIED}.items[0].data.pw" in {r.path for r in rec.redactions}


def test_last_applied_with_escaped_kind_and_a_plain_deployment() -> None:
    """``\\u0053ecret`` still spells Secret; a Deployment's last-applied is kept."""
    applied = '{"kind":"\\u0053ecret","data":{"pw":"' + PW + '"}}'
    obj = {"kind": "List", "metadata": {"annotations": {LAST_APPLIED: applied}}}
    assert_clean(make_event(verb="patch", resource="things", requestObject=obj), PW)
    deploy = orjson.dumps({"kind": "Deployment", "spec": {"replicas": 2}}).decode()
    obj = {"kind": "Deployment", "metadata": {"annotations": {LAST_APPLIED: deploy}}}
    rec = stored(make_event(verb="patch", resource="deployments", requestObject=obj))
    assert rec.event()["requestObject"]["metadata"]["annotations"][LAST_APPLIED] == deploy


def test_table_of_partial_metadata_for_another_resource() -> None:
    """A Table of PartialObjectMetadata (``kubectl get -o name``) whose objectRef is not secrets
    still carries each Secret's last-applied annotation."""
    applied = orjson.dumps(secret()).decode()
    table = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "rows": [
        {"cells": ["db"], "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                     "metadata": {"name": "db", "annotations": {LAST_APPLIED: applied}}}}]}
    rec = assert_clean(make_event(verb="list", resource="things", api_group="x.io", responseObject=table), PW, SD)
    assert rec.event()["responseObject"]["rows"][0]["cells"] == ["db"]


# 2. JWT and key shapes ------------------------------------------------------------------------

def test_jwt_and_private_key_as_dict_keys() -> None:
    """A credential used as a key is replaced, the value kept, and the path names no credential."""
    obj = {"kind": "ConfigMap", "data": {TOKEN: "v1", RSA_KEY: "v2", "plain": "v3"}}
    rec = assert_clean(make_event(verb="create", resource="configmaps", requestObject=obj), TOKEN, KEY_BODY,
                       TOKEN.split(".")[1])
    data = rec.event()["requestObject"]["data"]
    assert sorted(data.values()) == ["v1", "v2", "v3"] and data["plain"] == "v3"
    assert {r.what for r in rec.redactions} == {"jwt", "private-key"}


@pytest.mark.parametrize("header", [b'{ "alg": "RS256" }', b'{\n  "alg": "RS256"\n}', b'{\t"alg":"ES256"}',
                                    b'{\r\n"alg":"none"}'])
def test_jwt_with_whitespace_in_header_and_claims(header: bytes) -> None:
    """Pretty-printed JWT headers base64 to ``eyA``/``ewo``/``ewk``/``ew0`` instead of ``eyJ``."""
    token = jwt({"sub": "x"}, header)
    spaced = token.split(".")
    spaced[1] = b64url(b'{ "sub": "planted-claims-x" }')
    token2 = ".".join(spaced)
    ev = make_event(requestURI=f"/api/v1/pods?token={token}", annotations={"a": f"Bearer {token2}"})
    assert_clean(ev, token, token.split(".")[0], token2, spaced[1])


def test_padded_jwt_parts() -> None:
    """``=`` padding on the parts (some issuers add it) does not hide the token."""
    token = jwt({"sub": "system:serviceaccount:ns:padded-sa", "jti": "j"}, pad=True)
    assert "=" in token
    assert_clean(make_event(annotations={"x": token}), token.split(".")[1].rstrip("="), token.split(".")[2])


@pytest.mark.parametrize("prefix", ["", "u:", "us:", "oauth2accesstoken:"])
def test_base64_wrapped_jwt_at_every_alignment(prefix: str) -> None:
    """``base64("user:" + JWT)`` (Basic auth, registry auth) at each alignment of the JWT."""
    wrapped = base64.b64encode(f"{prefix}{TOKEN}".encode()).decode()
    obj = {"kind": "ConfigMap", "data": {"auth": wrapped, "url": f"https://x/{wrapped}"}}
    rec = assert_clean(make_event(verb="create", resource="configmaps", requestObject=obj), wrapped)
    assert {r.what for r in rec.redactions} == {"base64-jwt", "credential-field"}  # "auth" names one too
    assert [r.path for r in rec.redactions if r.what == "base64-jwt"] == ["requestObject.data.url"]


def test_kubeconfig_key_data_is_removed_certificates_survive() -> None:
    """``client-key-data`` is base64 of a PEM private key; certificate data is what the credential
    inventory reads, so it stays."""
    key_data = base64.b64encode(RSA_KEY.encode()).decode()
    cert_data = base64.b64encode(CERT.encode()).decode()
    kubeconfig = textwrap.dedent(f"""\
        apiVersion: v1
        clusters:
        - cluster: {{certificate-authority-data: {cert_data}, server: https://1.2.3.4}}
        users:
        - user:
            client-certificate-data: {cert_data}
            client-key-data: {key_data}
        """)
    wrapped = "\n".join(textwrap.wrap(key_data, 64))
    obj = {"kind": "ConfigMap", "data": {"kubeconfig": kubeconfig, "wrapped": wrapped, "ca.crt": CERT,
                                         "client-key-data": key_data}}
    rec = assert_clean(make_event(verb="create", resource="configmaps", requestObject=obj), key_data, KEY_BODY,
                       *wrapped.splitlines())
    data = rec.event()["requestObject"]["data"]
    assert data["ca.crt"] == CERT and data["kubeconfig"].count(cert_data) == 2
    assert data["client-key-data"] == REDACTED and data["wrapped"] == REDACTED


@pytest.mark.parametrize("prefix", ["", "#", "# a kubeconfig\n"])
def test_kubeconfig_file_in_binary_data(prefix: str) -> None:
    """A whole kubeconfig in a ConfigMap's ``binaryData`` is base64 of base64 for the key (and plain
    base64 for a token in it): both are found, at any alignment."""
    key_data = base64.b64encode(RSA_KEY.encode()).decode()
    for secret_line in (f"client-key-data: {key_data}", f"token: {TOKEN}"):
        blob = base64.b64encode(f"{prefix}users:\n- user:\n    {secret_line}\n".encode()).decode()
        obj = {"kind": "ConfigMap", "binaryData": {"config": blob}}
        rec = assert_clean(make_event(verb="create", resource="configmaps", requestObject=obj), blob)
        assert rec.event()["requestObject"]["binaryData"]["config"] == REDACTED


def test_csr_and_certificate_pems_survive() -> None:
    """A CSR's base64 request and an issued certificate are not credentials to hide."""
    csr_pem = "-----BEGIN CERTIFICATE REQUEST-----\nMIICvDCCAaQCAQAwdzELMAkGA1UEBhMCVVMx\n" \
              "-----END CERTIFICATE REQUEST-----\n"
    csr = {"kind": "CertificateSigningRequest", "spec": {"request": base64.b64encode(csr_pem.encode()).decode()},
           "status": {"certificate": base64.b64encode(CERT.encode()).decode()}}
    ev = make_event(verb="create", resource="certificatesigningrequests", api_group="certificates.k8s.io",
                    requestObject=csr, responseObject=csr)
    before = orjson.loads(orjson.dumps(ev))
    rec = stored(ev)
    assert rec.redactions == [] and rec.event()["responseObject"] == before["responseObject"]


def test_pgp_private_key_block() -> None:
    """An armoured PGP private key (``… PRIVATE KEY BLOCK-----``) is a private key too."""
    body = "lQOYBGXplantedPGPsecretKeyMaterial0123456789"
    pgp = f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{body}\n=abcd\n-----END PGP PRIVATE KEY BLOCK-----\n"
    pub = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBGXpublic\n-----END PGP PUBLIC KEY BLOCK-----\n"
    obj = {"kind": "ConfigMap", "data": {"k": "head\n" + pgp + "tail", "pub": pub}}
    rec = assert_clean(make_event(verb="create", resource="configmaps", requestObject=obj), body)
    data = rec.event()["requestObject"]["data"]
    assert data["k"] == f"head\n{REDACTED}\ntail" and data["pub"] == pub


# 3. The token-claims annotation ---------------------------------------------------------------

def test_incoming_claims_annotation_is_just_a_string() -> None:
    """An event that arrives carrying ``kubetrail.dev/token-claims`` with a JWT in it gets no pass."""
    ev = make_event(annotations={CLAIMS_ANNOTATION: orjson.dumps({"sub": TOKEN}).decode()})
    assert_clean(ev, TOKEN, TOKEN.split(".")[1])


def test_claims_holding_a_jwt_are_scrubbed_but_kept() -> None:
    """A token whose ``sub`` claim is itself a JWT: the annotation is kept (jti) without the JWT."""
    outer = jwt({"sub": TOKEN, "jti": "jti-outer-1", "exp": 1})
    ev = make_event(verb="create", resource="serviceaccounts", subresource="token", name="sa",
                    responseObject={"kind": "TokenRequest", "status": {"token": outer}})
    rec = assert_clean(ev, outer, TOKEN, TOKEN.split(".")[1])
    claims = orjson.loads(rec.event()["annotations"][CLAIMS_ANNOTATION])
    assert claims == {"sub": REDACTED, "jti": "jti-outer-1", "exp": 1}


# The cheap trigger ----------------------------------------------------------------------------

def test_common_events_skip_the_deep_pass() -> None:
    """The hot path stays cheap: an ordinary event (a Pod create) does not trigger the deep pass."""
    pod = {"kind": "Pod", "metadata": {"name": "web-1", "labels": {"app": "web"}},
           "spec": {"containers": [{"name": "c", "image": "nginx@sha256:" + "ab12" * 16,
                                    "env": [{"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db"}}}]}]}}
    ev = make_event(verb="create", resource="pods", requestObject=pod,
                    annotations={"authorization.k8s.io/reason": 'RBAC: allowed by ClusterRoleBinding "x"'})
    redact_event(ev, scan_jwts=False)
    assert not needs_deep_scan(orjson.dumps(ev))
    assert contains_jwt is needs_deep_scan


@pytest.mark.parametrize("shift", [b"", b"x", b"xy"])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_trigger_fires_for_base64_shapes_at_every_alignment(shift: bytes, encode: Callable[[bytes], bytes]) -> None:
    """Whatever precedes it, base64 of a JWT, of a PEM key, and of base64 of a PEM key trigger the
    deep pass (the surrounding text is chosen to hold none of the trigger bytes itself)."""
    pem = b"-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"
    for header in (b'{"alg":"RS256"}', b'{ "alg": "RS256" }', b'{\n "alg": "RS256"\n}', b'{\t"a":1}',
                   b'{\r\n"a":1}'):
        token = f"{b64url(header)}.{b64url(b'{}')}.x".encode()
        assert needs_deep_scan(orjson.dumps({"v": encode(shift + token).decode()})), header
    assert needs_deep_scan(orjson.dumps({"v": encode(shift + pem).decode()}))
    inner = base64.b64encode(pem)
    assert needs_deep_scan(orjson.dumps({"v": encode(shift + inner).decode()}))
