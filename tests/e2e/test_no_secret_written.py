"""Planted secrets and tokens appear in no byte kubetrail writes: the database and its WAL (bodies
decompressed), the rejects file, every other file in the data dir, stdout and stderr."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import orjson

from kubetrail.store.sqlite import Store
from kubetrail.testing import make_event

SECRET_B64 = base64.b64encode(b"planted-db-password-7f3a").decode()
SECRET_PLAIN = "planted-stringdata-9c1e"
CLAIMS = {"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:kube-system:admin-sa",
          "aud": ["api"], "exp": 1714560000, "iat": 1714556400, "jti": "jti-planted-0001"}


def b64url(obj: dict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()


TOKEN = f"{b64url({'alg': 'RS256'})}.{b64url(CLAIMS)}.cGxhbnRlZC1zaWduYXR1cmUtYWJj"
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCplantedkey"
PRIVATE_KEY = f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----\n"
PATCH_VALUE = "planted-json-patch-4d2b"
TABLE_VALUE = base64.b64encode(b"planted-table-row-8e6f").decode()
# Shapes the deep pass finds (each planted value is unique, so a leak names its shape).
NESTED_B64 = base64.b64encode(b"planted-nested-secret-5a1c").decode()
NESTED_PLAIN = "planted-nested-stringdata-3b7e"
APPLIED_B64 = base64.b64encode(b"planted-last-applied-6d0f").decode()
PARTIAL_B64 = base64.b64encode(b"planted-partial-metadata-2e9a").decode()


def jwt_of(claims: dict, header: bytes = b'{"alg":"RS256"}', pad: bool = False) -> str:
    parts = [base64.urlsafe_b64encode(p).decode() for p in (header, orjson.dumps(claims), b"planted-sig-xyz")]
    return ".".join(parts if pad else [p.rstrip("=") for p in parts])


KEY_JWT = jwt_of({"sub": "planted-key-jwt"})
SPACED_JWT = jwt_of({"sub": "planted-spaced-jwt"}, b'{\n  "alg": "RS256"\n}')
PADDED_JWT = jwt_of({"sub": "planted-padded-jwt-0"}, pad=True)
WRAPPED_JWT = base64.b64encode(f"user:{jwt_of({'sub': 'planted-wrapped-jwt'})}".encode()).decode()
CLAIMS_JWT = jwt_of({"sub": "planted-claims-annotation-jwt"})
SUB_JWT = jwt_of({"sub": "planted-sub-claim-jwt"})
OUTER_TOKEN = jwt_of({"sub": SUB_JWT, "jti": "jti-planted-outer"})
RSA_BODY = "MIIEpAIBAAKCAQEAplantedClientKeyData0123"
CLIENT_KEY_DATA = base64.b64encode(
    f"-----BEGIN RSA PRIVATE KEY-----\n{RSA_BODY}\n-----END RSA PRIVATE KEY-----\n".encode()).decode()
CERT_DATA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIBplantedCertificate\n-----END CERTIFICATE-----\n").decode()
PGP_BODY = "lQOYBGXplantedPGPprivateKeyMaterial"
REJECT_JWT = jwt_of({"sub": "planted-reject-jwt"})
NEEDLES = [SECRET_B64, SECRET_PLAIN, TOKEN, TOKEN.split(".")[2], "planted-db-password-7f3a", PEM_BODY,
           PATCH_VALUE, TABLE_VALUE, NESTED_B64, NESTED_PLAIN, APPLIED_B64, PARTIAL_B64,
           *(t.split(".")[1].rstrip("=") for t in (KEY_JWT, SPACED_JWT, PADDED_JWT, CLAIMS_JWT, SUB_JWT, OUTER_TOKEN,
                                                   REJECT_JWT)),
           WRAPPED_JWT, CLIENT_KEY_DATA, RSA_BODY, PGP_BODY, base64.b64encode(b"planted-nested-secret").decode()]


def events() -> list[dict]:
    secret = make_event("s-1", verb="create", resource="secrets", name="db",
                        requestObject={"kind": "Secret", "data": {"password": SECRET_B64},
                                       "stringData": {"user": SECRET_PLAIN},
                                       "metadata": {"annotations": {
                                           "kubectl.kubernetes.io/last-applied-configuration":
                                               orjson.dumps({"data": {"password": SECRET_B64}}).decode()}}},
                        responseObject={"kind": "Secret", "data": {"password": SECRET_B64}})
    listing = make_event("s-2", verb="list", resource="secrets", namespace="",
                         responseObject={"kind": "SecretList", "items": [{"data": {"password": SECRET_B64}}]})
    token = make_event("t-1", verb="create", resource="serviceaccounts", subresource="token", name="admin-sa",
                       namespace="kube-system",
                       responseObject={"kind": "TokenRequest", "status": {"token": TOKEN}})
    uri = make_event("u-1", requestURI=f"/api/v1/pods?access_token={TOKEN}")
    review = make_event("r-1", verb="create", resource="tokenreviews", requestObject={"spec": {"token": TOKEN}})
    json_patch = make_event("p-1", verb="patch", resource="secrets", name="db",
                            requestObject=[{"op": "replace", "path": "/stringData/pw", "value": PATCH_VALUE}])
    table = make_event("tb-1", verb="list", resource="secrets",
                       responseObject={"kind": "Table", "rows": [
                           {"cells": ["db"], "object": {"kind": "Secret", "data": {"pw": TABLE_VALUE}}}]})
    pem = make_event("k-1", verb="create", resource="configmaps", name="kubeconfig",
                     requestObject={"kind": "ConfigMap", "data": {"client.key": PRIVATE_KEY}})
    return [secret, listing, token, uri, review, json_patch, table, pem, *nested_events()]


def nested_events() -> list[dict]:
    """One event per shape the deep pass exists for."""
    sec = {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "n"}, "data": {"pw": NESTED_B64},
           "stringData": {"user": NESTED_PLAIN}}
    admission = {"kind": "AdmissionReview", "request": {
        "kind": {"kind": "Secret"}, "resource": {"group": "", "resource": "secrets"}, "object": sec, "oldObject": sec}}
    applied = orjson.dumps({"kind": "List", "items": [{"kind": "Secret", "data": {"pw": APPLIED_B64}}]}).decode()
    partial = orjson.dumps({"kind": "Secret", "data": {"pw": PARTIAL_B64}}).decode()
    kubeconfig = (f"users:\n- user:\n    client-certificate-data: {CERT_DATA}\n"
                  f"    client-key-data: {CLIENT_KEY_DATA}\n")
    pgp = f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{PGP_BODY}\n-----END PGP PRIVATE KEY BLOCK-----\n"
    cm = {"kind": "ConfigMap", "data": {KEY_JWT: "jwt-as-key", "spaced": SPACED_JWT, "padded": PADDED_JWT,
                                        "auth": WRAPPED_JWT, "kubeconfig": kubeconfig, "pgp": pgp}}
    return [
        make_event("n-1", verb="create", resource="admissionreviews", api_group="proxy.example.io",
                   requestObject=admission),
        make_event("n-2", verb="create", resource="configmaps",
                   requestObject={"kind": "List", "items": [{"kind": "List", "items": [sec]}]}),
        make_event("n-3", verb="create", resource="templates", api_group="template.openshift.io",
                   requestObject={"kind": "Template", "objects": [sec]}),
        make_event("n-4", verb="patch", resource="configmaps",
                   requestObject={"kind": "List", "metadata": {"annotations": {LAST_APPLIED: applied}}}),
        make_event("n-5", verb="list", resource="things", api_group="x.io", responseObject={"kind": "Table", "rows": [
            {"cells": ["n"], "object": {"kind": "PartialObjectMetadata",
                                        "metadata": {"annotations": {LAST_APPLIED: partial}}}}]}),
        make_event("n-6", verb="create", resource="configmaps", name="kubeconfig", requestObject=cm),
        make_event("n-7", annotations={"kubetrail.dev/token-claims": orjson.dumps({"sub": CLAIMS_JWT}).decode()}),
        make_event("n-8", verb="create", resource="serviceaccounts", subresource="token", name="sa",
                   responseObject={"kind": "TokenRequest", "status": {"token": OUTER_TOKEN}}),
    ]


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def rejected_inputs(tmp_path: Path) -> list[str]:
    """Inputs that are rejected while carrying a JWT: each reason must leave it out."""
    gke = {"insertId": "g", "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                                             "serviceName": REJECT_JWT, "methodName": "io.k8s.core.v1.pods.get"}}
    gke_verb = {"insertId": "h", "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                                                  "methodName": f"io.k8s.core.v1.pods.{REJECT_JWT.replace('.', '')}"}}
    bad = tmp_path / "bad.log"
    bad.write_bytes(b"\n".join([orjson.dumps({**make_event("x-1"), "kind": {"t": REJECT_JWT}}),
                                orjson.dumps({**make_event("x-2"), "apiVersion": REJECT_JWT}),
                                orjson.dumps(gke), orjson.dumps(gke_verb)]) + b"\n")
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text(f"kind: !{REJECT_JWT} Event\nauditID: y\n")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)))
    return [str(bad), str(tagged), str(bomb)]


def all_bytes(data_dir: Path) -> bytes:
    out = b""
    for p in data_dir.rglob("*"):
        if p.is_file():
            out += p.read_bytes()
    store = Store.open(str(data_dir), create=False)
    try:
        for _, _, _, body in store.iter_entries():
            out += body or b""
    finally:
        store.close()
    return out


def test_planted_secrets_are_nowhere(tmp_path: Path) -> None:
    src = tmp_path / "audit.log"
    lines = [orjson.dumps(e) for e in events()]
    # Also a truncated Secret line (rejected: its excerpt must not be kept) and a CRI-wrapped copy.
    bad = orjson.dumps(events()[0])[:-40]
    src.write_bytes(b"\n".join([*lines, bad, b"2024-05-01T10:00:00Z stdout F " + lines[2]]) + b"\n")
    data = tmp_path / "data"
    env = {**os.environ, "KUBETRAIL_DATA": str(data)}
    outputs = b""
    extra = rejected_inputs(tmp_path)
    shows = [["show", str(i), "--json"] for i in range(len(events()) + 1)]
    for args in (["ingest", str(src), *extra], ["query", "--json"], *shows, ["stats"]):
        r = subprocess.run([sys.executable, "-m", "kubetrail", *args], capture_output=True, env=env, timeout=120)
        assert b"Traceback" not in r.stderr, r.stderr.decode()
        outputs += r.stdout + r.stderr
    assert b"rejected 7" in outputs
    everything = all_bytes(data) + outputs
    for needle in NEEDLES:
        assert needle.encode() not in everything, f"{needle[:20]}… leaked"
    # The claims were kept, so the credential inventory can still name the token.
    assert b"jti-planted-0001" in everything and b"jti-planted-outer" in everything
    assert CERT_DATA.encode() in everything, "certificates are not secrets: the inventory needs them"
