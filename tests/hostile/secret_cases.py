"""The secrets generator (issue 10, "Done means"): distinct planted secrets, each in one shape real
events carry credentials in, delivered in every format; and the must-keep list of what is
evidence, not a secret.

Each planted value is unique and random-looking (so a leak names its shape and format), and is
checked in every encoding a byte of output could hold it in (``forms``).
"""

from __future__ import annotations

import base64
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import orjson

from kubetrail.testing import make_event

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
USER = "planter@example.com"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forms(secret: str) -> set[str]:
    """The encodings of ``secret`` that must be in no byte kubetrail writes or sends."""
    out = {secret, b64(secret), base64.urlsafe_b64encode(secret.encode()).decode(), quote(secret, safe=""),
           quote_plus(secret)}
    return {f.rstrip("=") for f in out}


@dataclass
class Planted:
    secret: str
    shape: str
    event: dict[str, Any]
    extra: tuple[str, ...] = ()  # further needles: the credential as the shape spells it (a JWT, base64 of user:pw)


def _exec(secret: str, *command: str) -> dict[str, Any]:
    query = urlencode([("container", "app"), *(("command", c) for c in command), ("stdin", "true"), ("tty", "true")])
    return {"verb": "create", "resource": "pods", "subresource": "exec", "name": "web-1", "namespace": "prod",
            "requestURI": f"/api/v1/namespaces/prod/pods/web-1/exec?{query}"}


def _configmap(data: dict[str, str], binary: dict[str, str] | None = None, annotations: dict[str, str] | None = None
               ) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "cfg", "namespace": "prod", **({"annotations": annotations}
                                                                                 if annotations else {})},
                           "data": data}
    if binary:
        obj["binaryData"] = binary
    return {"verb": "create", "resource": "configmaps", "name": "cfg", "namespace": "prod", "requestObject": obj,
            "responseObject": obj}


def _kubeconfig(user: str) -> str:
    return ("apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://10.0.0.1:6443\n"
            f"users:\n- name: ci\n  user:\n{user}contexts:\n- name: ci@prod\n  context: {{cluster: prod, user: ci}}\n")


def _pod(container: dict[str, Any]) -> dict[str, Any]:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "prod"},
           "spec": {"serviceAccountName": "web", "imagePullSecrets": [{"name": "regcred-keep"}],
                    "containers": [{"name": "app", "image": "registry.example.com/keep/app-token-service:v7",
                                    **container}]}}
    return {"verb": "create", "resource": "pods", "name": "web-1", "namespace": "prod", "requestObject": pod,
            "responseObject": pod}


_JWT_HEADER = b64url(b'{"alg":"RS256","kid":"k"}')


def _jwt(sig: str, sub: str = "system:serviceaccount:prod:web") -> str:
    return f"{_JWT_HEADER}.{b64url(orjson.dumps({'sub': sub, 'jti': 'keep-jti'}))}.{sig}"


def _pem(body: str) -> str:
    return f"-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA{body}\n-----END RSA PRIVATE KEY-----\n"


def _deployment_applied(secret: str) -> dict[str, Any]:
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "prod"},
           "spec": {"template": {"spec": {"imagePullSecrets": [{"name": "regcred-keep"}], "containers": [
               {"name": "api", "image": "registry.example.com/keep/api:v3",
                "env": [{"name": "DB_PASSWORD", "value": secret}, {"name": "DB_HOST", "value": "db.keep"}]}]}}}}
    applied = orjson.dumps(dep).decode() + "\n"
    patch = {"metadata": {"annotations": {LAST_APPLIED: applied}}}
    return {"verb": "patch", "resource": "deployments", "api_group": "apps", "name": "api", "namespace": "prod",
            "requestObject": patch}


# shape name -> (event fields for a secret, extra needles). Every shape names what a real cluster logs.
SHAPES: dict[str, Callable[[str], tuple[dict[str, Any], tuple[str, ...]]]] = {
    "uri-access-token": lambda s: ({"requestURI": f"/api/v1/namespaces/prod/pods?access_token={s}&limit=5",
                                    "user_": "system:anonymous"}, ()),
    "uri-password": lambda s: ({"requestURI": f"/apis/x.io/v1/things?user=bob&password={quote(s)}"}, ()),
    "exec-bearer": lambda s: (_exec(s, "sh", "-c", f'curl -sH "Authorization: Bearer {s}" https://api.internal'), ()),
    "exec-flag-equals": lambda s: (_exec(s, "mysql", "-h", "db", f"--password={s}"), ()),
    "exec-flag-separate": lambda s: (_exec(s, "vault", "login", "--token", s), ()),
    "exec-export": lambda s: (_exec(s, "sh", "-c", f"export API_KEY={s} && ./sync"), ()),
    "exec-base64-kubeconfig": lambda s: (_exec(s, "sh", "-c", f"echo {b64(_kubeconfig(f'    token: {s}'))} "
                                                              "| base64 -d > /tmp/kc"), (b64(f"token: {s}"),)),
    "annotation-bearer": lambda s: ({"annotations": {"example.com/upstream-authorization": f"Bearer {s}"}}, ()),
    "object-basic-auth": lambda s: (_configmap({"note": "see header"},
                                               annotations={"example.com/proxy": f"Authorization: Basic {b64('ci:' + s)}"}),
                                    (b64("ci:" + s),)),
    "kubeconfig-token": lambda s: (_configmap({"kubeconfig": _kubeconfig(f"    token: {s}\n")}), ()),
    "kubeconfig-password": lambda s: (_configmap({"kubeconfig": _kubeconfig(f"    username: ci\n    password: {s}\n")}),
                                      ()),
    "kubeconfig-oidc": lambda s: (_configmap({"kubeconfig": _kubeconfig(
        f"    auth-provider:\n      name: oidc\n      config:\n        client-secret: {s}\n")}), ()),
    "properties-password": lambda s: (_configmap({"app.properties": f"db.url=jdbc:pg://db.keep\ndb.password={s}\n"}), ()),
    "binarydata-kubeconfig": lambda s: (_configmap({}, binary={"kubeconfig": b64(_kubeconfig(f"    token: {s}\n"))}),
                                        (b64(_kubeconfig(f"    token: {s}\n")),)),
    "pod-env": lambda s: (_pod({"env": [{"name": "DB_PASSWORD", "value": s}, {"name": "DB_HOST", "value": "db.keep"}]}),
                          ()),
    "pod-args": lambda s: (_pod({"args": ["--listen=:8080", "--api-token", s]}), ()),
    "crd-field": lambda s: ({"verb": "create", "resource": "backups", "api_group": "keep.example.com",
                             "requestObject": {"apiVersion": "keep.example.com/v1", "kind": "Backup",
                                               "spec": {"s3": {"bucket": "backups-keep", "secretAccessKey": s}}}}, ()),
    "secret-data": lambda s: ({"verb": "create", "resource": "secrets", "name": "db", "namespace": "prod",
                               "requestObject": {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "db"},
                                                 "data": {"password": b64(s)}}}, ()),
    "secret-stringdata": lambda s: ({"verb": "update", "resource": "secrets", "name": "db", "namespace": "prod",
                                     "requestObject": {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "db"},
                                                       "stringData": {"password": s}}}, ()),
    "last-applied-env": lambda s: (_deployment_applied(s), ()),
    "configmap-jwt": lambda s: (_configmap({"token": _jwt(s)}), (_jwt(s),)),
    "configmap-pem": lambda s: (_configmap({"tls.key": _pem(s)}), ()),
    "tokenrequest": lambda s: ({"verb": "create", "resource": "serviceaccounts", "subresource": "token", "name": "web",
                                "namespace": "prod", "responseObject": {"kind": "TokenRequest",
                                                                        "status": {"token": _jwt(s)}}}, (_jwt(s),)),
    "json-in-annotation": lambda s: ({"annotations": {"example.com/client-config": orjson.dumps(
        {"endpoint": "https://keep.example.com", "password": s}).decode()}}, ()),
    "docker-config-json": lambda s: (_configmap({"config.json": orjson.dumps(
        {"auths": {"registry.example.com": {"auth": b64("ci:" + s)}}}).decode()}), (b64("ci:" + s),)),
    "github-token": lambda s: (_configmap({"ci.env": f"GH=ghp_{s}"}), (f"ghp_{s}",)),
    "percent-encoded-callback": lambda s: ({"annotations": {"example.com/callback": "https://hooks.keep/x?"
                                                            + quote(f"token={s}", safe="")}}, ()),
}


def _secret(rng: random.Random, shape: str) -> str:
    n = 36 if shape == "github-token" else 24
    core = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n - 4))
    return ("Zq" + core + "9x")[:n]


def planted(seed: int = 10) -> list[Planted]:
    """One planted secret per shape for each caller: ``planted()`` is called once per format."""
    rng = random.Random(seed)
    out = []
    for shape, build in SHAPES.items():
        secret = _secret(rng, shape)
        fields, extra = build(secret)
        fields = dict(fields)
        user = fields.pop("user_", USER)
        event = make_event(f"plant-{seed}-{shape}", user=user, time="2025-03-01T10:00:00.000000Z",
                           **{k: v for k, v in fields.items() if k in ("verb", "resource", "subresource", "name",
                                                                     "namespace", "api_group")})
        for k, v in fields.items():
            if k not in ("verb", "resource", "subresource", "name", "namespace", "api_group"):
                event[k] = v
        event["level"] = "RequestResponse"
        out.append(Planted(secret, shape, event, extra))
    return out


# What must still be there afterwards: evidence, not secrets.
MUST_KEEP = ["registry.example.com/keep/app-token-service:v7", "registry.example.com/keep/api:v3", "regcred-keep",
             "db.keep", "backups-keep", "keep-jti", "AgBy3i4OJSWK+PiTySYZZA9rO43cGDEqkeep", "vault-keep",
             "token-refresher-keep", "secret-reader-keep", "system:serviceaccount:prod:web"]


def keep_events() -> list[dict[str, Any]]:
    """Objects that look like secrets to a careless redactor and are evidence."""
    sealed = {"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret", "metadata": {"name": "db"},
              "spec": {"encryptedData": {"password": "AgBy3i4OJSWK+PiTySYZZA9rO43cGDEqkeep"},
                       "template": {"type": "Opaque"}}}
    external = {"apiVersion": "external-secrets.io/v1beta1", "kind": "ExternalSecret", "metadata": {"name": "db"},
                "spec": {"secretStoreRef": {"name": "vault-keep", "kind": "ClusterSecretStore"},
                         "data": [{"secretKey": "password", "remoteRef": {"key": "db/prod", "property": "password"}}]}}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "r"},
               "roleRef": {"kind": "Role", "name": "secret-reader-keep", "apiGroup": "rbac.authorization.k8s.io"},
               "subjects": [{"kind": "ServiceAccount", "name": "token-refresher-keep", "namespace": "ci"}]}
    out = []
    for i, (obj, res, group) in enumerate(((sealed, "sealedsecrets", "bitnami.com"),
                                          (external, "externalsecrets", "external-secrets.io"),
                                          (binding, "rolebindings", "rbac.authorization.k8s.io"))):
        applied = orjson.dumps(obj).decode() + "\n"
        with_applied = {**obj, "metadata": {**obj["metadata"], "annotations": {LAST_APPLIED: applied}}}
        ev = make_event(f"keep-{i}", verb="create", resource=res, api_group=group, user=USER,
                        requestObject=with_applied, responseObject=with_applied)
        ev["level"] = "RequestResponse"
        out.append(ev)
    return out
