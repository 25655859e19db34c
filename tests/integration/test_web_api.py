"""`kubetrail serve`'s API over a real uvicorn server on the demo's data: authentication, security
headers, pagination, the same JSON as the CLI's --json, nothing redacted ever shown."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import Decoded, SourceRef
from kubetrail.store import open_store
from kubetrail.testing import make_event
from kubetrail.web.app import ServeContext, VerifyCache, build_app
from kubetrail.web.auth import Authenticator, CertAwareH11, TokenFile
from kubetrail.web.serving import BackgroundServer, TLSFiles

from .test_audit_webhook import _cert, _key, _write

pytestmark = pytest.mark.integration

TOKEN = "web-test-token-6f1d0c"
PLANTED = "planted-web-secret-77aa"
PAGES = ["/", "/alerts", "/alerts/1", "/credentials", "/search", "/timeline", "/posture"]
API = ["/api/v1/status", "/api/v1/events", "/api/v1/alerts", "/api/v1/alerts/1", "/api/v1/credentials"]


def cli(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "kubetrail", *args], capture_output=True, text=True,
                          check=True).stdout


@dataclass
class Served:
    data: Path
    base: str
    client: httpx.Client

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(self.base + path, **kw)

    def api(self, path: str) -> Any:
        resp = self.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status_code == 200, (path, resp.status_code, resp.text[:300])
        return resp.json()


def start(data: Path, tokens: Path | None, tls: TLSFiles | None = None) -> BackgroundServer:
    d = str(data)
    ctx = ServeContext(data_dir=d, open_store=lambda: open_store(d, readonly=True), verify=VerifyCache(d))
    auth = Authenticator(TokenFile(str(tokens)) if tokens else None, client_certs=bool(tls and tls.client_ca_file))
    return BackgroundServer(build_app(ctx, auth), "127.0.0.1:0", tls=tls,
                            http=CertAwareH11 if tls and tls.client_ca_file else "h11").start()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("web") / "data"
    cli("demo", "--data", str(data))
    secret = make_event("5ec7e7aa-0000-0000-0000-000000000001", verb="create", resource="secrets", name="db",
                        namespace="payments", user="alice", requestObject={
                            "kind": "Secret", "data": {"password": base64.b64encode(PLANTED.encode()).decode()},
                            "stringData": {"token": PLANTED}})
    pipe = open_pipeline(Options(data_dir=str(data)))
    try:
        pipe.ingest_items([Decoded(secret, "json", "planted:1")], SourceRef(stream="file:planted.json"))
    finally:
        pipe.close()
        pipe.store.close()
    return data


@pytest.fixture(scope="module")
def served(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tokens = tmp_path_factory.mktemp("tok") / "tokens"
    tokens.write_text(f"# dashboard tokens\n\n{TOKEN}\nanother-token\n")
    server = start(demo, tokens)
    host, port = server.address
    with httpx.Client(timeout=30) as client:
        yield Served(demo, f"http://{host}:{port}", client)
    server.stop()


def test_everything_but_healthz_needs_authentication(served: Served) -> None:
    assert served.get("/healthz").status_code == 200
    for path in [*PAGES, *API, "/metrics", "/api/v1/credentials/x", "/static/style.css", "/nope"]:
        resp = served.get(path)
        assert resp.status_code == 401, path
        assert PLANTED not in resp.text and "alice" not in resp.text
    for bad in ("Bearer wrong", "Bearer", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x"):
        assert served.get("/api/v1/events", headers={"Authorization": bad}).status_code == 401, bad
    assert served.get("/api/v1/events", headers={"Authorization": "Bearer another-token"}).status_code == 200


def test_every_page_and_route_answers_with_strict_headers(served: Served) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for path in [*PAGES, *API, "/metrics", "/healthz"]:
        resp = served.get(path, headers=auth)
        assert resp.status_code == 200, path
        h = resp.headers
        assert "default-src 'none'" in h["content-security-policy"] and "frame-ancestors 'none'" in h[
            "content-security-policy"]
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "no-referrer" and h["cache-control"] == "no-store"
        assert "server" not in h
    assert served.get("/api/v1/alerts/999999", headers=auth).status_code == 404
    assert served.get("/alerts/999999", headers=auth).status_code == 404
    assert "yesterday-ish" in served.get("/api/v1/events?since=yesterday-ish", headers=auth).json()["error"]
    assert served.get("/api/v1/events?cursor=garbage", headers=auth).status_code == 400
    assert served.get("/api/v1/events?limit=100000", headers=auth).status_code == 400


def test_read_only(served: Served) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert served.client.request(method, served.base + "/api/v1/alerts", headers=auth).status_code == 405
        assert served.client.request(method, served.base + "/api/v1/alerts").status_code == 401


def test_token_in_the_url_becomes_a_cookie(served: Served) -> None:
    resp = served.get(f"/alerts?priority=Critical&token={TOKEN}")
    assert resp.status_code == 303 and resp.headers["location"] == "/alerts?priority=Critical"
    cookie = resp.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    with httpx.Client(base_url=served.base, cookies={"kubetrail_token": TOKEN}) as browser:
        assert browser.get("/alerts?priority=Critical").status_code == 200
    with httpx.Client(base_url=served.base) as stranger:
        assert stranger.get("/alerts?token=wrong").status_code == 401


def pages(served: Served, path: str, limit: int) -> list[list[Any]]:
    out, cursor = [], None
    while True:
        sep = "&" if "?" in path else "?"
        doc = served.api(f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        out.append(doc["items"])
        cursor = doc["next"]
        if cursor is None:
            return out
        assert len(doc["items"]) == limit


def test_events_pagination_walks_everything_once_newest_first(served: Served) -> None:
    kinds = {k["kind"]: k["records"] for k in served.api("/api/v1/status")["kinds"]}
    size = kinds["audit"]  # events are audit events; the demo's container log lines are `kubetrail logs`'
    walked = pages(served, "/api/v1/events", 400)
    items = [i for p in walked for i in p]
    assert len(items) == size and len({i["key"] for i in items}) == size
    order = [(i["time_ns"], i["leaf_index"]) for i in items]
    assert order == sorted(order, reverse=True)
    filtered = [i for p in pages(served, "/api/v1/events?verb=create,delete&namespace=payments", 3) for i in p]
    assert filtered and all(i["verb"] in ("create", "delete") and i["namespace"] == "payments" for i in filtered)


def test_alerts_and_credentials_pagination(served: Served) -> None:
    alerts = [a for p in pages(served, "/api/v1/alerts", 7) for a in p]
    assert len(alerts) == served.api("/api/v1/status")["alerts"]["total"] == len({a["id"] for a in alerts})
    critical = [a for p in pages(served, "/api/v1/alerts?priority=Critical", 5) for a in p]
    assert critical and {a["priority"] for a in critical} <= {"Emergency", "Alert", "Critical"}
    creds = [c for p in pages(served, "/api/v1/credentials", 10) for c in p]
    assert len(creds) == served.api("/api/v1/credentials")["total"] == len({c["id"] for c in creds})


def test_the_api_returns_what_the_cli_prints(served: Served) -> None:
    data = str(served.data)
    user = "system:serviceaccount:monitoring:prometheus-k8s"
    api_events = {e["key"]: e for p in pages(served, f"/api/v1/events?user={user}", 500) for e in p}
    cli_events = [json.loads(line) for line in cli("query", "--data", data, "--user", user, "--json").splitlines()]
    assert cli_events and {e["key"]: e for e in cli_events} == api_events
    api_alerts = [a for p in pages(served, "/api/v1/alerts", 500) for a in p]
    cli_alerts = [json.loads(line) for line in cli("alerts", "--data", data, "--json").splitlines()]
    assert sorted(cli_alerts, key=lambda a: a["id"]) == sorted(api_alerts, key=lambda a: a["id"])
    assert json.loads(cli("alerts", "show", "1", "--data", data, "--json")) == served.api("/api/v1/alerts/1")
    cli_creds = [json.loads(line) for line in cli("creds", "list", "--data", data, "--json").splitlines()]
    assert cli_creds == [c for p in pages(served, "/api/v1/credentials", 500) for c in p]
    ident = cli_creds[0]["id"]
    assert json.loads(cli("creds", "show", ident, "--data", data, "--json")) == served.api(f"/api/v1/credentials/{ident}")
    status_cli = json.loads(subprocess.run([sys.executable, "-m", "kubetrail", "status", "--data", data, "--json"],
                                           capture_output=True, text=True).stdout)
    status_api = served.api("/api/v1/status")
    volatile = {"generated_at", "sources", "trail"}
    assert {k: v for k, v in status_cli.items() if k not in volatile} == \
        {k: v for k, v in status_api.items() if k not in volatile}
    assert [s["source"] for s in status_cli["sources"]] == [s["source"] for s in status_api["sources"]]
    assert status_cli["trail"]["verify"]["ok"] and status_api["trail"]["verify"]["ok"]


def test_nothing_redaction_removed_is_ever_shown(served: Served) -> None:
    """The planted Secret's value is in no API answer and no page, in clear or base64."""
    needles = [PLANTED, base64.b64encode(PLANTED.encode()).decode()]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bodies = [json.dumps(p) for p in pages(served, "/api/v1/events?namespace=payments&body=1", 50)]
    assert any('"db"' in b for b in bodies), "the planted event is served"
    for path in ["/search?namespace=payments&go=1", "/timeline?entity=user&value=alice",
                 "/timeline?entity=namespace&value=payments", "/api/v1/events?user=alice&body=1", "/",
                 "/api/v1/status"]:
        bodies.append(served.get(path, headers=auth).text)
    for text in bodies:
        for needle in needles:
            assert needle not in text


def test_client_certificates(demo: Path, tmp_path: Path) -> None:
    """With --client-ca-file: a certificate from the CA is let in; none, or another CA's, is 401/refused."""
    ca_key, other_key = _key(), _key()
    ca = _cert("web test CA", ca_key, None, ca_key, ca=True)
    other = _cert("other CA", other_key, None, other_key, ca=True)
    _write(tmp_path / "ca", ca, ca_key)
    for name, subject, issuer, key_of_issuer, server in (("server", "localhost", ca, ca_key, True),
                                                          ("alice", "alice", ca, ca_key, False),
                                                          ("mallory", "alice", other, other_key, False)):
        key = _key()
        _write(tmp_path / name, _cert(subject, key, issuer, key_of_issuer, server=server), key)
    tls = TLSFiles(str(tmp_path / "server.crt"), str(tmp_path / "server.key"), str(tmp_path / "ca.crt"))
    server = start(demo, None, tls)
    try:
        url = f"https://localhost:{server.address[1]}/api/v1/status"

        def get(cert: str | None) -> int:
            ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
            if cert:
                ctx.load_cert_chain(str(tmp_path / f"{cert}.crt"), str(tmp_path / f"{cert}.key"))
            with httpx.Client(verify=ctx, timeout=30) as c:
                return c.get(url).status_code

        assert get("alice") == 200
        assert get(None) == 401
        try:
            mallory: int | str = get("mallory")
        except (httpx.TransportError, ssl.SSLError):
            mallory = "refused in the handshake"
        assert mallory in (401, "refused in the handshake")
    finally:
        server.stop()
