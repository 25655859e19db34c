"""Issue 10 items 6-8: redaction sees through percent-encoding and base64, finds credentials in the
shapes real events carry them (exec arguments, Authorization headers, kubeconfigs and properties
files in ConfigMaps, name=value pairs, env vars, flags), keeps what is evidence (applied specs,
SealedSecrets, ExternalSecrets, image and Secret names), and lists keyed digests.

Every event goes through ``to_record`` (cheap pass, trigger, deep pass), as in production."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from urllib.parse import parse_qs, quote, quote_plus, urlencode, urlsplit

import orjson
import pytest

from kubetrail.record import Decoded, Record, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.stages.redact import LAST_APPLIED, REDACTED, needs_deep_scan, redact_event, scrub_text
from kubetrail.stages.redaction_key import RedactionKey, load_or_create
from kubetrail.testing import make_event

PW = "Hunter2-planted-9f8e"
TOK = "opaqueToken-planted-7c6d5e"


def stored(event: dict, key: RedactionKey | None = None) -> Record:
    return to_record(Decoded(event, "event", "t:1"), SourceRef(), key)


def clean(event: dict, *needles: str) -> Record:
    """Neither the needles nor their base64/percent forms are in the body or a redaction path."""
    rec = stored(event)
    written = rec.body + orjson.dumps([r.path for r in rec.redactions])
    for needle in needles:
        for form in (needle, base64.b64encode(needle.encode()).decode(), quote(needle), quote_plus(needle)):
            assert form.encode() not in written, f"{form[:30]}… leaked"
    return rec


def exec_uri(*command: str) -> str:
    query = urlencode([("container", "app"), *(("command", c) for c in command), ("stdin", "true")])
    return f"/api/v1/namespaces/prod/pods/web-1/exec?{query}"


def exec_event(*command: str) -> dict:
    return make_event(verb="create", resource="pods", subresource="exec", namespace="prod", name="web-1",
                      requestURI=exec_uri(*command))


@pytest.mark.parametrize("command", [
    ("sh", "-c", f'curl -H "Authorization: Bearer {TOK}" https://api.example.com'),
    ("mysql", f"--password={PW}", "-h", "db"),
    ("mysql", "--password", PW),
    ("vault", "login", "-method=userpass", f"password={PW}"),
    ("sh", "-c", f"echo {base64.b64encode(f'token: {TOK}'.encode()).decode()} | base64 -d"),
    ("sh", "-c", f"export DB_PASSWORD='{PW}' && ./run"),
])
def test_exec_arguments_are_seen_through_percent_encoding(command: tuple[str, ...]) -> None:
    needle = TOK if TOK in " ".join(command) or "token" in " ".join(command) else PW
    rec = clean(exec_event(*command), needle)
    uri = rec.event()["requestURI"]
    assert rec.meta.request_uri == uri
    args = parse_qs(urlsplit(uri).query)["command"]
    assert args[0] == command[0] and REDACTED in " ".join(args), args  # still readable, decoded
    assert parse_qs(urlsplit(uri).query)["container"] == ["app"]


def test_double_percent_encoding_and_query_parameters() -> None:
    uri = f"/apis/x.io/v1/things?token={TOK}&next={quote(quote(f'password={PW}'))}&limit=5"
    rec = clean(make_event(requestURI=uri), TOK, PW)
    assert "limit=5" in rec.event()["requestURI"]


@pytest.mark.parametrize("value", [f"Bearer {TOK}", f"bearer {TOK}", f"Basic {base64.b64encode(b'u:' + PW.encode()).decode()}",
                                   f"Authorization: token {TOK}"])
def test_auth_headers_in_annotations(value: str) -> None:
    obj = {"kind": "Ingress", "metadata": {"name": "i", "annotations": {"example.com/upstream-auth": value,
                                                                       "note": f"called with {value}"}}}
    ev = make_event(verb="create", resource="ingresses", api_group="networking.k8s.io", requestObject=obj,
                    annotations={"example.com/header": value})
    clean(ev, TOK if TOK in value else PW, value.split()[-1])


def test_kubeconfig_and_properties_in_a_configmap() -> None:
    kubeconfig = ("apiVersion: v1\nkind: Config\nusers:\n- name: ci\n  user:\n"
                  f"    token: {TOK}\n    password: '{PW}'\n"
                  "    auth-provider:\n      config:\n        client-secret: oidc-planted-secret-1\n"
                  "        id-token: idtok-planted-2\n")
    cm = {"kind": "ConfigMap", "metadata": {"name": "cfg"},
          "data": {"kubeconfig": kubeconfig, "app.properties": f"db.url=jdbc:pg://db\ndb.password={PW}\n"},
          "binaryData": {"kubeconfig.b64": base64.b64encode(kubeconfig.encode()).decode()}}
    rec = clean(make_event(verb="create", resource="configmaps", requestObject=cm), TOK, PW,
                "oidc-planted-secret-1", "idtok-planted-2", cm["binaryData"]["kubeconfig.b64"])
    data = rec.event()["requestObject"]["data"]
    assert "apiVersion: v1\nkind: Config" in data["kubeconfig"] and "db.url=jdbc:pg://db" in data["app.properties"]


def test_structured_credentials_env_and_flags() -> None:
    pod = {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{
        "name": "c", "image": "registry.example.com/team/api-token-service:v2",
        "args": ["--api-token", TOK, "--listen=:8080"],
        "env": [{"name": "DB_PASSWORD", "value": PW}, {"name": "DB_HOST", "value": "db.prod"},
                {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "api", "key": "key"}}}]}],
        "imagePullSecrets": [{"name": "regcred"}], "automountServiceAccountToken": True}}
    crd = {"kind": "Backup", "spec": {"s3": {"accessKey": "AKIAPLANTED0000000000", "secretAccessKey": PW + "x",
                                            "bucket": "backups"}}}
    rec = clean(make_event(verb="create", resource="pods", requestObject=pod), TOK, PW)
    spec = rec.event()["requestObject"]["spec"]
    assert spec["containers"][0]["image"] == "registry.example.com/team/api-token-service:v2"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}] and spec["automountServiceAccountToken"] is True
    assert spec["containers"][0]["env"][1] == {"name": "DB_HOST", "value": "db.prod"}
    assert spec["containers"][0]["args"][2] == "--listen=:8080"
    rec = clean(make_event(verb="create", resource="backups", api_group="x.io", requestObject=crd), PW + "x")
    assert rec.event()["requestObject"]["spec"]["s3"]["bucket"] == "backups"


def test_applied_specs_are_kept_with_their_secrets_removed() -> None:
    """Item 7: a Deployment's last-applied mentions Secrets (imagePullSecrets, secretKeyRef): kept
    whole; an env value in it that is a credential goes, the rest stays."""
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": {"spec": {
        "imagePullSecrets": [{"name": "regcred"}], "volumes": [{"name": "s", "secret": {"secretName": "tls"}}],
        "containers": [{"name": "c", "image": "nginx:1.27", "env": [{"name": "ADMIN_PASSWORD", "value": PW}]}]}}}}
    applied = orjson.dumps(dep).decode() + "\n"
    obj = {**dep, "metadata": {"name": "web", "annotations": {LAST_APPLIED: applied}}}
    rec = clean(make_event(verb="patch", resource="deployments", api_group="apps", requestObject=obj), PW)
    kept = orjson.loads(rec.event()["requestObject"]["metadata"]["annotations"][LAST_APPLIED])
    assert kept["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert kept["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == REDACTED
    plain = {**dep, "spec": {"replicas": 2}}
    plain_applied = orjson.dumps({**plain, "metadata": {"name": "x"}}).decode() + "\n"
    obj = {**plain, "metadata": {"name": "x", "annotations": {LAST_APPLIED: plain_applied}}}
    rec = stored(make_event(verb="patch", resource="deployments", api_group="apps", requestObject=obj))
    assert rec.event()["requestObject"]["metadata"]["annotations"][LAST_APPLIED] == plain_applied, "byte for byte"


def test_sealed_and_external_secrets_and_rbac_are_evidence() -> None:
    sealed = {"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret", "metadata": {"name": "db"},
              "spec": {"encryptedData": {"password": "AgBy3i4OJSWK+PiTySYZZA9rO43cGDEq"}, "template": {"type": "Opaque"}}}
    external = {"apiVersion": "external-secrets.io/v1beta1", "kind": "ExternalSecret", "metadata": {"name": "db"},
                "spec": {"data": [{"secretKey": "password", "remoteRef": {"key": "db/prod", "property": "password"}}]}}
    binding = {"kind": "RoleBinding", "metadata": {"name": "r"}, "roleRef": {"kind": "Role", "name": "secret-reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "token-refresher", "namespace": "ci"}]}
    for obj, res in ((sealed, "sealedsecrets"), (external, "externalsecrets"), (binding, "rolebindings")):
        applied = orjson.dumps(obj).decode() + "\n"
        with_applied = {**obj, "metadata": {**obj["metadata"], "annotations": {LAST_APPLIED: applied}}}
        rec = stored(make_event(verb="create", resource=res, api_group="x.io", requestObject=with_applied))
        assert rec.redactions == [] and rec.event()["requestObject"] == with_applied


@pytest.mark.parametrize("text", ["ghp_" + "A" * 36, "xoxb-123456789012-abcdefghij", "glpat-abcdefghij0123456789",
                                  "AIza" + "B" * 35])
def test_well_known_token_formats(text: str) -> None:
    clean(make_event(verb="create", resource="configmaps", requestObject={"kind": "ConfigMap",
                                                                         "data": {"ci": f"use {text} here"}}), text)


def test_the_trigger_stays_quiet_on_ordinary_events() -> None:
    """The cheap pass decides; these must not cost the deep pass (a token *volume*, a Secret *name*,
    an authorization decision, an image named after a token are no credentials)."""
    pod = {"kind": "Pod", "spec": {"automountServiceAccountToken": False, "volumes": [
        {"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}]}},
        {"name": "s", "secret": {"secretName": "db-secret"}}],
        "containers": [{"name": "c", "image": "example.com/token-service:v1"}]}}
    ev = make_event(verb="create", resource="pods", requestObject=pod,
                    requestURI="/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1&labelSelector=app%3Dweb",
                    annotations={"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC"})
    redact_event(ev, scan_jwts=False)
    assert not needs_deep_scan(orjson.dumps(ev))


def test_digests_are_keyed(tmp_path: Path) -> None:
    """Item 8: the digest is an HMAC under the store's key: equal values match under one key, and
    a guessed value's plain SHA-256 says nothing."""
    import hashlib

    path = tmp_path / "d" / "redaction.key"
    key = load_or_create(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and path.read_text().startswith("kubetrail-redaction-key/v1 ")
    again = load_or_create(str(path))
    one = stored(exec_event("mysql", f"--password={PW}"), key)
    two = stored(exec_event("psql", f"--password={PW}"), again)
    other = stored(exec_event("mysql", f"--password={PW}"), RedactionKey.ephemeral())
    assert one.redactions[0].hmac == two.redactions[0].hmac != other.redactions[0].hmac
    assert len(one.redactions[0].hmac) == 16 and one.redactions[0].sha256_prefix == ""
    assert hashlib.sha256(PW.encode()).hexdigest()[:12] not in str(one.redactions)
    assert one.body == other.body, "the redacted body does not depend on the key"


def test_alert_text_scrub_keeps_names() -> None:
    """Rendering removes what a decoded value could carry, not the labels a rule author wrote."""
    assert scrub_text(f"curl -H 'Authorization: Bearer {TOK}'", pairs=False) == "curl -H 'Authorization: Bearer [redacted]'"
    assert scrub_text("Secret read (secret=db-creds user=alice)", pairs=False) == "Secret read (secret=db-creds user=alice)"
    assert scrub_text(f"mysql --password={PW}") == "mysql --password=[redacted]"
