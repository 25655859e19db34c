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
NEEDLES = [SECRET_B64, SECRET_PLAIN, TOKEN, TOKEN.split(".")[2], "planted-db-password-7f3a", PEM_BODY,
           PATCH_VALUE, TABLE_VALUE]


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
    return [secret, listing, token, uri, review, json_patch, table, pem]


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
    for args in (["ingest", str(src)], ["query", "--json"], ["show", "2", "--json"], ["stats"]):
        r = subprocess.run([sys.executable, "-m", "kubetrail", *args], capture_output=True, env=env, timeout=120)
        assert b"Traceback" not in r.stderr, r.stderr.decode()
        outputs += r.stdout + r.stderr
    assert b"rejected 1" in outputs
    everything = all_bytes(data) + outputs
    for needle in NEEDLES:
        assert needle.encode() not in everything, f"{needle[:20]}… leaked"
    # The claims were kept, so the credential inventory can still name the token.
    assert b"jti-planted-0001" in everything
