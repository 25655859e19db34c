"""Secrets and tokens are removed before anything is written, and the removal is listed."""

from __future__ import annotations

import base64
import copy

import orjson

from kubetrail.stages.redact import CLAIMS_ANNOTATION, LAST_APPLIED, REDACTED, redact_event


def b64url(obj: dict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()


def jwt(claims: dict) -> str:
    return f"{b64url({'alg': 'RS256', 'kid': 'k'})}.{b64url(claims)}.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


CLAIMS = {"aud": ["https://kubernetes.default.svc"], "exp": 1714560000, "iat": 1714556400,
          "iss": "https://kubernetes.default.svc", "jti": "5b4c7c0e-1111-2222-3333-444455556666",
          "sub": "system:serviceaccount:kube-system:admin-sa",
          "kubernetes.io": {"namespace": "kube-system", "serviceaccount": {"name": "admin-sa", "uid": "u"}}}
TOKEN = jwt(CLAIMS)


def secret_event(**over: object) -> dict:
    ev = {"auditID": "1", "verb": "create", "stage": "ResponseComplete",
          "objectRef": {"resource": "secrets", "namespace": "default", "name": "db"},
          "requestObject": {"kind": "Secret", "apiVersion": "v1",
                            "metadata": {"name": "db", "annotations": {LAST_APPLIED: '{"data":{"pw":"aHVudGVyMg=="}}'}},
                            "data": {"pw": "aHVudGVyMg=="}, "stringData": {"user": "root"}},
          "responseObject": {"kind": "Secret", "data": {"pw": "aHVudGVyMg=="}}}
    ev.update(over)
    return ev


def test_secret_data_stringdata_and_last_applied() -> None:
    """data and stringData of a Secret are gone, also inside its last-applied annotation, whose
    other content (the applied object's metadata, type) stays; paths listed."""
    ev = secret_event()
    ev["requestObject"]["metadata"]["annotations"][LAST_APPLIED] = (
        '{"apiVersion":"v1","data":{"pw":"aHVudGVyMg=="},"kind":"Secret","metadata":{"name":"db"},"type":"Opaque"}\n')
    found = redact_event(ev)
    text = orjson.dumps(ev)
    assert b"aHVudGVyMg==" not in text and b"root" not in text
    paths = {r.path for r in found}
    assert {"requestObject.data.pw", "requestObject.stringData.user", "responseObject.data.pw",
            f"requestObject.metadata.annotations.{LAST_APPLIED}.data.pw"} <= paths
    applied = ev["requestObject"]["metadata"]["annotations"][LAST_APPLIED]
    assert orjson.loads(applied) == {"apiVersion": "v1", "data": {"pw": REDACTED}, "kind": "Secret",
                                     "metadata": {"name": "db"}, "type": "Opaque"} and applied.endswith("\n")
    same = [r.hmac for r in found if r.path.endswith("data.pw")]
    assert len(set(same)) == 1 and len(same[0]) == 16, "equal secret values share a keyed digest"


def test_last_applied_that_is_not_json_goes_whole() -> None:
    ev = secret_event()
    ev["requestObject"]["metadata"]["annotations"][LAST_APPLIED] = '{"data":{"pw":"aHVudGVyMg=='
    found = redact_event(ev)
    assert ev["requestObject"]["metadata"]["annotations"][LAST_APPLIED] == REDACTED
    assert "secret-last-applied" in {r.what for r in found}


def test_secret_list_and_patch() -> None:
    """A cluster-wide list of Secrets and a patch of one are scrubbed too."""
    listing = {"auditID": "2", "verb": "list", "objectRef": {"resource": "secrets"},
               "responseObject": {"kind": "SecretList", "items": [{"data": {"a": "czE="}}, {"data": {"b": "czI="}}]}}
    redact_event(listing)
    assert listing["responseObject"]["items"][1]["data"]["b"] == REDACTED
    patch = {"auditID": "3", "verb": "patch", "objectRef": {"resource": "secrets", "name": "x"},
             "requestObject": {"stringData": {"token": "abc123"}}}
    redact_event(patch)
    assert patch["requestObject"]["stringData"]["token"] == REDACTED


def test_bootstrap_token_keeps_only_public_keys() -> None:
    """A bootstrap-token Secret loses token-secret (and unknown keys) but keeps what the inventory needs."""
    def b64(v: str) -> str:
        return base64.b64encode(v.encode()).decode()

    data = {"token-id": b64("abcdef"), "token-secret": b64("0123456789abcdef"),
            "expiration": b64("2025-06-02T10:00:00Z"), "usage-bootstrap-signing": b64("true"),
            "auth-extra-groups": b64("system:bootstrappers:kubeadm:default-node-token"), "other": b64("x1y2z3")}
    obj = {"kind": "Secret", "type": "bootstrap.kubernetes.io/token",
           "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
           "data": dict(data), "stringData": {"token-secret": "0123456789abcdef", "expiration": "2025-06-02T10:00:00Z"}}
    ev = {"auditID": "b", "verb": "create", "objectRef": {"resource": "secrets", "namespace": "kube-system"},
          "requestObject": obj, "responseObject": copy.deepcopy(obj)}
    found = redact_event(ev)
    text = orjson.dumps(ev)
    assert b"0123456789abcdef" not in text and data["token-secret"].encode() not in text
    assert b"x1y2z3" not in text and data["other"].encode() not in text
    for side in ("requestObject", "responseObject"):
        kept = ev[side]["data"]
        assert kept["expiration"] == data["expiration"] and kept["token-id"] == data["token-id"]
        assert kept["auth-extra-groups"] == data["auth-extra-groups"]
        assert ev[side]["stringData"] == {"token-secret": REDACTED, "expiration": "2025-06-02T10:00:00Z"}
    assert {r.path for r in found} >= {"requestObject.data.token-secret", "responseObject.data.other",
                                       "requestObject.stringData.token-secret"}
    # the same keys in an ordinary Secret stay secret
    plain = {"auditID": "p", "verb": "create", "objectRef": {"resource": "secrets"},
             "requestObject": {"kind": "Secret", "type": "Opaque", "data": {"expiration": data["expiration"]}}}
    redact_event(plain)
    assert plain["requestObject"]["data"]["expiration"] == REDACTED


def test_secret_in_json_patch_text_patch_and_table() -> None:
    """Every shape a Secret can be logged in: JSON Patch ops, a patch kept as text, Table rows."""
    ops = [{"op": "add", "path": "/data/pw", "value": "c2VjcmV0MQ=="},
           {"op": "replace", "path": "/data", "value": {"k": "c2VjcmV0Mg=="}}, {"op": "remove", "path": "/data/x"}]
    ev = {"auditID": "jp", "verb": "patch", "objectRef": {"resource": "secrets", "name": "db"}, "requestObject": ops}
    found = redact_event(ev)
    assert b"c2VjcmV0" not in orjson.dumps(ev)
    assert [o["path"] for o in ev["requestObject"]] == ["/data/pw", "/data", "/data/x"], "paths are kept"
    assert [r.path for r in found] == ["requestObject[0].value", "requestObject[1].value"]
    text = {"auditID": "tx", "verb": "patch", "objectRef": {"resource": "secrets", "name": "db"},
            "requestObject": "stringData:\n  pw: hunter2\n"}
    redact_event(text)
    assert text["requestObject"] == REDACTED
    table = {"auditID": "tb", "verb": "list", "objectRef": {"resource": "secrets"},
             "responseObject": {"kind": "Table", "rows": [
                 {"cells": ["db", "Opaque", 1], "object": {"kind": "Secret", "data": {"pw": "c2VjcmV0Mw=="},
                                                           "metadata": {"name": "db"}}}]}}
    redact_event(table)
    assert table["responseObject"]["rows"][0]["object"]["data"]["pw"] == REDACTED
    assert table["responseObject"]["rows"][0]["cells"] == ["db", "Opaque", 1]
    # a Table of Secrets returned for a non-secret URL (an aggregated API) is still recognised
    other = {"auditID": "t2", "verb": "list", "objectRef": {"resource": "things", "apiGroup": "x.io"},
             "responseObject": copy.deepcopy(table["responseObject"])}
    other["responseObject"]["rows"][0]["object"]["data"]["pw"] = "c2VjcmV0NA=="
    redact_event(other)
    assert b"c2VjcmV0NA==" not in orjson.dumps(other)


def test_private_keys_anywhere() -> None:
    """A PEM private key in a ConfigMap or an env var is removed; a certificate is not."""
    key = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkZ\n-----END EC PRIVATE KEY-----"
    cert = "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----"
    ev = {"auditID": "pk", "verb": "create", "objectRef": {"resource": "configmaps"},
          "requestObject": {"kind": "ConfigMap", "data": {"tls.key": f"{cert}\n{key}\n", "ca.crt": cert}}}
    found = redact_event(ev)
    assert "MHcCAQEEIBkZ" not in orjson.dumps(ev).decode()
    assert ev["requestObject"]["data"]["ca.crt"] == cert and ev["requestObject"]["data"]["tls.key"].startswith(cert)
    assert [r.what for r in found] == ["private-key"]


def test_non_secret_objects_are_untouched() -> None:
    """A ConfigMap's data is not a Secret's data (detections need it)."""
    ev = {"auditID": "4", "verb": "create", "objectRef": {"resource": "configmaps"},
          "requestObject": {"kind": "ConfigMap", "data": {"a": "b"}}}
    before = copy.deepcopy(ev)
    assert redact_event(ev) == [] and ev == before


def test_tokenrequest_token_removed_claims_kept() -> None:
    """The issued token is never kept; its claims are, as an annotation."""
    ev = {"auditID": "5", "verb": "create",
          "objectRef": {"resource": "serviceaccounts", "subresource": "token", "name": "admin-sa"},
          "responseObject": {"kind": "TokenRequest", "status": {"token": TOKEN, "expirationTimestamp": "x"}}}
    found = redact_event(ev)
    assert TOKEN not in orjson.dumps(ev).decode()
    assert ev["responseObject"]["status"]["token"] == REDACTED
    claims = orjson.loads(ev["annotations"][CLAIMS_ANNOTATION])
    assert claims["jti"] == CLAIMS["jti"] and claims["kubernetes.io"]["serviceaccount"]["name"] == "admin-sa"
    assert [r.what for r in found] == ["token"]


def test_tokenreview_and_jwt_anywhere() -> None:
    """TokenReview spec.token and JWT-shaped strings in URIs or other objects are removed."""
    ev = {"auditID": "6", "verb": "create", "objectRef": {"resource": "tokenreviews"},
          "requestObject": {"spec": {"token": TOKEN}}}
    redact_event(ev)
    assert TOKEN not in orjson.dumps(ev).decode()
    ev = {"auditID": "7", "verb": "get", "requestURI": f"/api/v1/namespaces?token={TOKEN}",
          "objectRef": {"resource": "configmaps"}, "responseObject": {"data": {"kubeconfig": f"token: {TOKEN}"}}}
    found = redact_event(ev)
    assert TOKEN not in orjson.dumps(ev).decode() and len(found) == 2
