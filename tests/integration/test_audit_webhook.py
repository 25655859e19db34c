"""The audit webhook against a real HTTPS client: a throwaway CA, server and client certificates,
the real server on 127.0.0.1, and the real store behind it (issue 2, "Done means")."""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubetrail.cli import cli
from kubetrail.errors import SourceError
from kubetrail.pipeline import Options, Pipeline, open_pipeline
from kubetrail.record import Decoded, Rejected, SourceRef
from kubetrail.sources.audit_webhook import AuditWebhookConfig, AuditWebhookReceiver
from kubetrail.store.queries import QueryFilters
from kubetrail.store.sqlite import Store
from kubetrail.store.testing import execute as sql
from kubetrail.testing import make_event

pytestmark = pytest.mark.integration

TOKEN = "s3cr3t-webhook-token-0123456789abcdef"
LIMIT = 64 * 1024


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False, server: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (x509.CertificateBuilder().subject_name(name)
         .issuer_name(issuer.subject if issuer else name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if issuer is not None:
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False)
    if server:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_key = _key(), _key()
    ca = _cert("kubetrail test CA", ca_key, None, ca_key, ca=True)
    other_ca = _cert("someone else's CA", other_key, None, other_key, ca=True)
    _write(d / "ca", ca, ca_key)
    for name, subject, issuer, issuer_key, server in (
            ("server", "localhost", ca, ca_key, True),
            ("apiserver", "kube-apiserver", ca, ca_key, False),
            ("kubelet", "system:node:node-a", ca, ca_key, False),
            ("stranger", "kube-apiserver", other_ca, other_key, False)):
        key = _key()
        _write(d / name, _cert(subject, key, issuer, issuer_key, server=server), key)
    (d / "tokens").write_text(f"# webhook tokens\n{TOKEN},apiserver-b\n")
    return d


@dataclass
class Env:
    receiver: AuditWebhookReceiver
    pipe: Pipeline
    pki: Path

    def stored(self) -> int:
        return int(sql(self.pipe.store, "SELECT COUNT(*) FROM entries").fetchone()[0])

    def connect(self, cert: str | None = None) -> http.client.HTTPSConnection:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        if cert:
            ctx.load_cert_chain(str(self.pki / f"{cert}.crt"), str(self.pki / f"{cert}.key"))
        host, port = self.receiver.address
        return http.client.HTTPSConnection(host, port, context=ctx, timeout=10)

    def post(self, body: bytes, cert: str | None = None, token: str | None = None) -> tuple[int, dict]:
        conn = self.connect(cert)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            conn.request("POST", "/audit", body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, orjson.loads(resp.read() or b"{}")
        finally:
            conn.close()


@pytest.fixture
def env(pki: Path, tmp_path: Path) -> Iterator[Env]:
    pipe = open_pipeline(Options(data_dir=str(tmp_path / "data")))
    config = AuditWebhookConfig(listen_address="127.0.0.1:0", tls_cert_file=str(pki / "server.crt"),
                                tls_key_file=str(pki / "server.key"), client_ca_file=str(pki / "ca.crt"),
                                client_names=["kube-apiserver"], bearer_token_file=str(pki / "tokens"),
                                max_body_bytes=LIMIT)
    receiver = AuditWebhookReceiver(config, pipe.commit_decoded, cluster="test")
    receiver.start()
    try:
        yield Env(receiver, pipe, pki)
    finally:
        receiver.stop(grace_secs=5)
        pipe.close()
        pipe.store.close()


def event_list(n: int, prefix: str = "evt") -> bytes:
    items = [make_event(f"{prefix}-{i:04d}", time=f"2024-05-01T10:00:{i % 60:02d}.000000Z") for i in range(n)]
    return orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})


def test_cert_client_batch_is_stored_once(env: Env) -> None:
    body = event_list(5)
    assert env.post(body, cert="apiserver") == (200, {"events": 5, "rejected": 0})
    assert env.stored() == 5
    assert env.post(body, cert="apiserver")[0] == 200  # the apiserver's retry after a lost 200
    assert env.stored() == 5
    row = sql(env.pipe.store, "SELECT COUNT(*) FROM entries").fetchone()
    assert row[0] == 5


def test_token_client_bare_event_and_array(env: Env) -> None:
    assert env.post(event_list(3, "tok"), token=TOKEN)[0] == 200
    assert env.post(orjson.dumps(make_event("bare-1")), token=TOKEN)[0] == 200
    assert env.post(orjson.dumps([make_event("arr-1"), make_event("arr-2")]), token=TOKEN)[0] == 200
    assert env.stored() == 6
    records = list(env.pipe.store.records_by_index(0, 6))
    assert {r.source.label() for r in records} == {"test/audit-webhook:apiserver-b"}


@pytest.mark.parametrize("cert,token", [(None, None), (None, "wrong-token"), (None, TOKEN[:-1]),
                                        ("kubelet", None)])
def test_unauthenticated_is_401_and_nothing_stored(env: Env, cert: str | None, token: str | None) -> None:
    status, answer = env.post(event_list(2), cert=cert, token=token)
    assert status == 401 and "unauthenticated" in answer["error"]
    assert env.stored() == 0
    assert env.receiver.counts.get("http_401") == 1


def test_certificate_from_another_ca_fails_the_handshake(env: Env) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        env.post(event_list(1), cert="stranger")
    assert env.stored() == 0


def test_oversize_is_413_without_reading_the_body(env: Env) -> None:
    # Headers first, then read the answer: the server must refuse before the body arrives.
    conn = env.connect("apiserver")
    conn.putrequest("POST", "/audit")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(100 * 1024 * 1024))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413
    conn.close()
    # A client that sends a (modestly) oversize body in one go also sees the 413.
    body = event_list(400)
    assert len(body) > LIMIT
    assert env.post(body, cert="apiserver")[0] == 413
    assert env.stored() == 0


def test_expect_continue_oversize_is_refused_before_the_body(env: Env) -> None:
    conn = env.connect("apiserver")
    conn.putrequest("POST", "/audit")
    conn.putheader("Content-Length", str(LIMIT + 1))
    conn.putheader("Expect", "100-continue")
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()


@pytest.mark.parametrize("body", [
    b"not json at all", b'{"kind": "EventList", "items": [', b'"a string"', b"42",
    b'{"kind": "Pod", "apiVersion": "v1"}', b'{"kind": "EventList", "apiVersion": "audit.k8s.io/v1"}',
    b'{"kind": "EventList", "items": [{"kind": 0}]}', b'[{"kind": "Pod"}]', b'{"records": []}',
    b'{"kind": "EventList", "apiVersion": "v1", "items": []}',
])
def test_not_an_event_list_is_400_and_nothing_stored(env: Env, body: bytes) -> None:
    assert env.post(body, cert="apiserver")[0] == 400
    assert env.stored() == 0
    assert env.pipe.store.counters().get("rejected", 0) == 0


def test_mixed_batch_stores_the_events_and_rejects_the_rest(env: Env) -> None:
    items = [make_event("good-1"), {"kind": 0}, make_event("good-2")]
    body = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})
    assert env.post(body, token=TOKEN) == (200, {"events": 2, "rejected": 1})
    assert env.stored() == 2
    rejects = (Path(env.pipe.store.data_dir) / "rejects.jsonl").read_text()
    assert "webhook:127.0.0.1:" in rejects and ".items[1]" in rejects


def test_keep_alive_connection_and_healthz(env: Env) -> None:
    conn = env.connect("apiserver")
    for i in range(3):
        conn.request("POST", "/", body=event_list(2, f"ka{i}"))
        resp = conn.getresponse()
        assert resp.status == 200
        resp.read()
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    conn.close()
    assert env.stored() == 6


def test_metrics_in_prometheus_text_format(env: Env) -> None:
    """`GET /metrics` (no client certificate needed, like the probes) counts events and answers."""
    def metrics() -> dict[str, float]:
        conn = env.connect()
        try:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/plain; version=0.0.4")
            text = resp.read().decode()
        finally:
            conn.close()
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line and not line.startswith("#")}

    before = metrics()
    assert env.post(event_list(3, "metrics"), cert="apiserver")[0] == 200
    assert env.post(event_list(1, "nope"))[0] == 401
    after = metrics()
    assert after["kubetrail_webhook_events_total"] - before["kubetrail_webhook_events_total"] == 3
    assert after['kubetrail_webhook_responses_total{code="200"}'] >= 1
    assert after['kubetrail_webhook_responses_total{code="401"}'] - before.get(
        'kubetrail_webhook_responses_total{code="401"}', 0) == 1


def test_commit_failure_is_503_and_a_retry_succeeds(pki: Path, tmp_path: Path) -> None:
    calls: list[int] = []

    def flaky(decoded: list[Decoded], rejected: list[Rejected], source: SourceRef, pos: dict[str, str]) -> None:
        calls.append(len(decoded))
        if len(calls) == 1:
            raise OSError("disk full")

    config = AuditWebhookConfig(listen_address="127.0.0.1:0", tls_cert_file=str(pki / "server.crt"),
                                tls_key_file=str(pki / "server.key"), bearer_token_file=str(pki / "tokens"))
    receiver = AuditWebhookReceiver(config, flaky)
    receiver.start()
    try:
        e = Env(receiver, None, pki)  # type: ignore[arg-type]
        assert e.post(event_list(2), token=TOKEN)[0] == 503
        assert e.post(event_list(2), token=TOKEN)[0] == 200
        assert calls == [2, 2]
    finally:
        receiver.stop()


def test_stop_closes_idle_connections_and_waits_for_commits(pki: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(decoded: list[Decoded], rejected: list[Rejected], source: SourceRef, pos: dict[str, str]) -> None:
        entered.set()
        release.wait(5)

    config = AuditWebhookConfig(listen_address="127.0.0.1:0", tls_cert_file=str(pki / "server.crt"),
                                tls_key_file=str(pki / "server.key"), bearer_token_file=str(pki / "tokens"))
    receiver = AuditWebhookReceiver(config, slow)
    receiver.start()
    e = Env(receiver, None, pki)  # type: ignore[arg-type]
    address = receiver.address
    idle = e.connect()
    idle.connect()  # an open keep-alive connection with no request
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(e.post(event_list(1), token=TOKEN)[0]))
    t.start()
    assert entered.wait(5)
    stopper = threading.Thread(target=receiver.stop, kwargs={"grace_secs": 5})
    stopper.start()
    release.set()
    stopper.join(10)
    t.join(10)
    assert result == [200] and not stopper.is_alive()
    assert idle.sock is not None and idle.sock.recv(1) == b""  # the server closed the idle one
    idle.close()
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=2).close()


def test_missing_auth_or_tls_is_a_config_error(pki: Path) -> None:
    with pytest.raises(SourceError, match="client_ca_file"):
        AuditWebhookReceiver(AuditWebhookConfig(tls_cert_file=str(pki / "server.crt"),
                                                tls_key_file=str(pki / "server.key")), lambda *a: None)
    with pytest.raises(SourceError, match="TLS"):
        AuditWebhookReceiver(AuditWebhookConfig(client_ca_file=str(pki / "ca.crt")), lambda *a: None)


def test_webhook_config_prints_a_kubeconfig(pki: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["webhook-config", "--server", "https://kubetrail.kube-system.svc:8443/",
                              "--ca-file", str(pki / "ca.crt"), "--embed-ca",
                              "--client-cert", "/etc/kubernetes/pki/audit-webhook.crt",
                              "--client-key", "/etc/kubernetes/pki/audit-webhook.key"])
    assert out.exit_code == 0, out.output
    doc = yaml.safe_load(out.output)
    assert doc["kind"] == "Config" and doc["apiVersion"] == "v1"
    cluster = doc["clusters"][0]["cluster"]
    assert cluster["server"] == "https://kubetrail.kube-system.svc:8443/"
    assert "certificate-authority-data" in cluster
    user = doc["users"][0]["user"]
    assert user == {"client-certificate": "/etc/kubernetes/pki/audit-webhook.crt",
                    "client-key": "/etc/kubernetes/pki/audit-webhook.key"}
    ctx = {c["name"]: c["context"] for c in doc["contexts"]}[doc["current-context"]]
    assert ctx == {"cluster": doc["clusters"][0]["name"], "user": doc["users"][0]["name"]}

    out = runner.invoke(cli, ["webhook-config", "--server", "https://10.0.0.5:8443/",
                              "--token-file", str(pki / "tokens")])
    assert out.exit_code == 0 and TOKEN not in out.output
    assert yaml.safe_load(out.output)["users"][0]["user"] == {"tokenFile": str(pki / "tokens")}

    for bad in (["--server", "http://x:80/", "--token-file", "t"], ["--server", "https://x/"],
                ["--server", "https://x/", "--client-cert", "c"]):
        out = runner.invoke(cli, ["webhook-config", *bad])
        assert out.exit_code == 2 and "Traceback" not in out.output


def _post_as_apiserver(pki: Path, port: int, body: bytes) -> int:
    """One POST with the apiserver's client certificate; the HTTP status."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "apiserver.crt"), str(pki / "apiserver.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request("POST", "/", body=body)
        return conn.getresponse().status
    finally:
        conn.close()


def _reap(proc: subprocess.Popen[str]) -> None:
    """Never leave a server behind when a test fails half-way."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


def test_webhook_serve_command_stores_and_stops_on_sigterm(pki: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubetrail", "webhook", "serve", "--listen", "127.0.0.1:0",
         "--tls-cert", str(pki / "server.crt"), "--tls-key", str(pki / "server.key"),
         "--client-ca", str(pki / "ca.crt"), "--client-name", "kube-apiserver", "--data", str(data)],
        stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"https://127\.0\.0\.1:(\d+)/", line)
        assert m, line
        assert _post_as_apiserver(pki, int(m.group(1)), event_list(4, "serve")) == 200
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(timeout=30) == 0, rest
        assert "stored 4" in rest and "Traceback" not in rest
    finally:
        _reap(proc)
    store = Store.open(str(data), create=False)
    try:
        assert store.size() == 4
    finally:
        store.close()


def test_rotated_server_certificate_is_picked_up(pki: Path, tmp_path: Path) -> None:
    d = tmp_path / "tls"
    d.mkdir()
    for suffix in (".crt", ".key"):
        (d / f"tls{suffix}").write_bytes((pki / f"server{suffix}").read_bytes())
    config = AuditWebhookConfig(listen_address="127.0.0.1:0", tls_cert_file=str(d / "tls.crt"),
                                tls_key_file=str(d / "tls.key"), bearer_token_file=str(pki / "tokens"))
    receiver = AuditWebhookReceiver(config, lambda *a: None)
    receiver.start()
    try:
        e = Env(receiver, None, pki)  # type: ignore[arg-type]

        def served_serial() -> int:
            conn = e.connect()
            conn.connect()
            assert conn.sock is not None
            der = conn.sock.getpeercert(binary_form=True)
            conn.close()
            return x509.load_der_x509_certificate(der).serial_number

        before = served_serial()
        ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
        ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
        key = _key()
        _write(d / "tls", _cert("localhost", key, ca, ca_key, server=True), key)  # type: ignore[arg-type]
        os.utime(d / "tls.crt", ns=(1, 1))
        os.utime(d / "tls.key", ns=(1, 1))
        after = served_serial()
        assert after != before
        assert e.post(event_list(1), token=TOKEN)[0] == 200
    finally:
        receiver.stop()


def _small_receiver(pki: Path, **kw: object) -> AuditWebhookReceiver:
    config = AuditWebhookConfig(listen_address="127.0.0.1:0", tls_cert_file=str(pki / "server.crt"),
                                tls_key_file=str(pki / "server.key"), bearer_token_file=str(pki / "tokens"),
                                **kw)  # type: ignore[arg-type]
    calls: list[int] = []
    receiver = AuditWebhookReceiver(config, lambda d, r, s, p: calls.append(len(d)))
    receiver.start()
    return receiver


def test_a_body_that_dribbles_past_the_read_timeout_is_dropped(pki: Path) -> None:
    receiver = _small_receiver(pki, read_timeout_secs=0.5)
    try:
        conn = Env(receiver, None, pki).connect()  # type: ignore[arg-type]
        conn.putrequest("POST", "/")
        conn.putheader("Authorization", f"Bearer {TOKEN}")
        conn.putheader("Content-Length", "1000")
        conn.endheaders()
        for _ in range(4):
            conn.send(b" " * 10)
            time.sleep(0.2)
        with pytest.raises((http.client.HTTPException, OSError)):
            conn.getresponse()
        conn.close()
        assert receiver.counts.get("events", 0) == 0 and "http_200" not in receiver.counts
    finally:
        receiver.stop()


def test_connections_over_the_cap_are_refused(pki: Path) -> None:
    receiver = _small_receiver(pki, max_connections=1)
    try:
        e = Env(receiver, None, pki)  # type: ignore[arg-type]
        first = e.connect()  # an authenticated keep-alive connection holds the only slot
        first.request("POST", "/", body=event_list(1), headers={"Authorization": f"Bearer {TOKEN}"})
        assert first.getresponse().read() and True
        with pytest.raises((ssl.SSLError, OSError)):
            e.post(event_list(1), token=TOKEN)
        first.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the slot frees when the first connection's thread ends
            try:
                if e.post(event_list(1), token=TOKEN)[0] == 200:
                    break
            except (ssl.SSLError, OSError):
                time.sleep(0.05)
        else:
            pytest.fail("the freed slot was never reused")
        assert receiver.counts["connections_refused"] >= 1
    finally:
        receiver.stop()


def test_run_serves_the_webhook_beside_a_tailed_file(pki: Path, tmp_path: Path) -> None:
    """`kubetrail run` with an audit_webhook and an audit_file source in one config: both store
    into the same trail, and SIGTERM flushes and exits 0."""
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(orjson.dumps(make_event(f"file-{i}")) + b"\n" for i in range(3)))
    config = tmp_path / "kubetrail.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"), "cluster": "test", "checkpoint_interval_secs": 0.2,
        "sources": [{"type": "audit_file", "path": str(log)},
                    {"type": "audit_webhook", "listen_address": "127.0.0.1:0",
                     "tls_cert_file": str(pki / "server.crt"), "tls_key_file": str(pki / "server.key"),
                     "client_ca_file": str(pki / "ca.crt"), "client_names": ["kube-apiserver"]}]}))
    proc = subprocess.Popen([sys.executable, "-m", "kubetrail", "run", "--config", str(config)],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        seen, m = [], None
        for line in proc.stderr:  # the log names the port the kernel picked
            seen.append(line)
            m = re.search(r"audit_webhook listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                break
        assert m, "".join(seen)
        assert _post_as_apiserver(pki, int(m.group(1)), event_list(4, "run")) == 200
        with log.open("ab") as fh:  # a line appended while running is picked up too
            fh.write(orjson.dumps(make_event("file-late")) + b"\n")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            probe = Store.open(str(tmp_path / "data"), create=False)
            try:
                if probe.size() >= 8:
                    break
            finally:
                probe.close()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.stderr is not None
        rest = proc.stderr.read()
        assert proc.wait(timeout=30) == 0, rest
        assert "Traceback" not in rest
    finally:
        _reap(proc)
    store = Store.open(str(tmp_path / "data"), create=False)
    try:
        streams = sorted({r.source.stream.split(":")[0] for r in store.query(QueryFilters())})
        assert store.size() == 8
        assert streams == ["audit-file", "audit-webhook"], streams
    finally:
        store.close()


# -- hostile clients (review 2) -------------------------------------------------------------------

def _raw_tls(pki: Path, address: tuple[str, int], cert: str | None = None) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    sock = socket.create_connection(address, timeout=5)
    return ctx.wrap_socket(sock, server_hostname="localhost")


def _status_of(sock: ssl.SSLSocket, raw: bytes) -> int | None:
    """Send ``raw``, read the answer's status; None when the server closed without one."""
    sock.sendall(raw)
    out = b""
    try:
        while b"\r\n" not in out:
            chunk = sock.recv(4096)
            if not chunk:
                break
            out += chunk
    except OSError:
        pass
    finally:
        sock.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", out)
    return int(m.group(1)) if m else None


def _hostile_receiver(pki: Path, tmp_path: Path, **kw: object) -> tuple[AuditWebhookReceiver, Pipeline]:
    pipe = open_pipeline(Options(data_dir=str(tmp_path / "data")))
    config = AuditWebhookConfig(listen_address="127.0.0.1:0", tls_cert_file=str(pki / "server.crt"),
                                tls_key_file=str(pki / "server.key"), client_ca_file=str(pki / "ca.crt"),
                                client_names=["kube-apiserver"], bearer_token_file=str(pki / "tokens"),
                                **kw)  # type: ignore[arg-type]
    receiver = AuditWebhookReceiver(config, pipe.commit_decoded, cluster="test")
    receiver.start()
    return receiver, pipe


def test_trickling_strangers_cannot_starve_the_apiserver(pki: Path, tmp_path: Path) -> None:
    """Slowloris: more unauthenticated connections than there are slots, each trickling a header
    byte; certificate and token clients still get their 200 at once, and the tricklers are cut
    when header_timeout_secs has passed."""
    receiver, pipe = _hostile_receiver(pki, tmp_path, max_connections=8, max_unauthenticated_connections=4,
                                       header_timeout_secs=1.5)
    stop = threading.Event()
    tricklers: list[ssl.SSLSocket] = []

    def trickle() -> None:
        while not stop.is_set():
            for s in list(tricklers):
                try:
                    s.send(b"X")
                except OSError:
                    tricklers.remove(s)
                    s.close()
            stop.wait(0.1)

    try:
        for _ in range(12):
            try:
                s = _raw_tls(pki, receiver.address)
                s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                tricklers.append(s)
            except OSError:
                pass
        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        e = Env(receiver, pipe, pki)
        started = time.monotonic()
        assert e.post(event_list(2, "cert"), cert="apiserver")[0] == 200
        assert e.post(event_list(2, "tok"), token=TOKEN)[0] == 200
        assert time.monotonic() - started < 1.5
        assert e.stored() == 4
        # A trickler that completed its handshake last is cut by the header deadline.
        last = _raw_tls(pki, receiver.address)
        last.sendall(b"POST / HTTP/1.1\r\n")
        cut_at = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                last.send(b"X")
                last.settimeout(0.2)
                if last.recv(1) == b"":
                    cut_at = time.monotonic()
                    break
            except TimeoutError:
                continue
            except OSError:
                cut_at = time.monotonic()
                break
        last.close()
        assert cut_at is not None and cut_at - (deadline - 5) < 3.5
        assert receiver.counts.get("header_timeouts", 0) >= 1
        assert receiver.counts.get("unauthenticated_evicted", 0) >= 1
    finally:
        stop.set()
        for s in tricklers:
            s.close()
        receiver.stop(grace_secs=2)
        pipe.close()
        pipe.store.close()


def _b64gz(doc: object) -> str:
    import base64
    import gzip
    return base64.b64encode(gzip.compress(orjson.dumps(doc))).decode()


@pytest.mark.parametrize("body", [
    orjson.dumps([{"awslogs": {"data": _b64gz([make_event("in-gzip")])}}]),
    orjson.dumps({"kind": "EventList", "items": [{"log": orjson.dumps(make_event("docker")).decode(),
                                                  "stream": "stdout"}]}),
    orjson.dumps([{"records": [{"properties": {"log": make_event("aks")}}]}]),
    orjson.dumps([[make_event("nested")]]),
    b"[" * 1000 + orjson.dumps(make_event("deep")) + b"]" * 1000,
])
def test_only_what_the_apiserver_sends_is_accepted(env: Env, body: bytes) -> None:
    """Log-file envelopes (gzip CloudWatch, Docker, AKS) and nested arrays are no webhook batch:
    400 and nothing stored, never an unwrapped gzip bomb or a dropped connection."""
    assert len(body) < LIMIT
    status, answer = env.post(body, token=TOKEN)
    assert status == 400, answer
    assert env.stored() == 0


@pytest.mark.parametrize("headers,expected", [
    (b"Content-Length: \xc2\xb2\r\n", 411),  # "²".isdigit() is True, int("²") raises
    (b"Content-Length: 12\r\nContent-Length: 13\r\n", 400),
])
def test_bad_content_length_is_answered(env: Env, headers: bytes, expected: int) -> None:
    sock = _raw_tls(env.pki, env.receiver.address)
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n" + headers + b"\r\n"
    assert _status_of(sock, raw + b"{}") == expected
    assert env.stored() == 0


def _odd_client_cert(pki: Path, name: str, cns: list[str], dns: list[str]) -> None:
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    key = _key()
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, c)
                                                           for c in cns]))
         .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if dns:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    _write(pki / name, b.sign(ca_key, hashes.SHA256()), key)  # type: ignore[arg-type]


@pytest.mark.parametrize("cns,dns", [
    (["alice"], ["kube-apiserver"]),              # a SAN names a server, not a user
    (["alice", "kube-apiserver"], []),            # two CNs: ambiguous
    (["kube-apiserver", "alice"], []),
])
def test_client_names_match_the_single_subject_cn_only(env: Env, cns: list[str], dns: list[str]) -> None:
    name = "odd-" + "-".join(cns + dns).replace(":", "")
    _odd_client_cert(env.pki, name, cns, dns)
    status, _ = env.post(event_list(1), cert=name)
    assert status == 401
    assert env.stored() == 0


def test_one_client_cannot_hold_every_connection(pki: Path, tmp_path: Path) -> None:
    """Issue 10 item 10: a token client at max_connections_per_client gets 429 on another
    connection, a certificate client over it is closed after the handshake; another client
    still gets in; the listen backlog is the kernel's normal one, not socketserver's 5."""
    receiver, pipe = _hostile_receiver(pki, tmp_path, max_connections=8, max_connections_per_client=2)
    held: list[http.client.HTTPSConnection] = []
    try:
        assert receiver._httpd is not None and receiver._httpd.request_queue_size >= 128
        e = Env(receiver, pipe, pki)
        for _ in range(2):  # two keep-alive connections of the token client
            conn = e.connect()
            conn.request("POST", "/", body=event_list(1, f"held{len(held)}"),
                         headers={"Authorization": f"Bearer {TOKEN}"})
            assert conn.getresponse().read() and True
            held.append(conn)
        assert e.post(event_list(1, "third"), token=TOKEN)[0] == 429
        for _ in range(2):
            conn = e.connect(cert="apiserver")
            conn.request("POST", "/", body=event_list(1, f"cert{len(held)}"))
            assert conn.getresponse().status == 200
            held.append(conn)
        with pytest.raises((http.client.HTTPException, OSError)):
            e.post(event_list(1, "cert-third"), cert="apiserver")
        assert receiver.counts["client_limit_refused"] == 2
        held.pop(0).close()  # a freed connection of the token client makes room for it again
        deadline = time.monotonic() + 5
        while e.post(event_list(1, "again"), token=TOKEN)[0] != 200:
            assert time.monotonic() < deadline, "the token client never got its slot back"
            time.sleep(0.05)
    finally:
        for conn in held:
            conn.close()
        receiver.stop(grace_secs=2)
        pipe.close()
        pipe.store.close()


def test_a_poisoned_batch_costs_its_event_never_a_503(env: Env) -> None:
    """Values that decode but cannot be written (issue 10 item 1), an event nested deeper than the
    parser reads (item 5): the batch is answered 200, the good events are stored, the odd ones
    are stored lossily or rejected, and the retry of the same batch is a 200 again."""
    items = [make_event("good-1"),
             {**make_event("late"), "stageTimestamp": "2300-01-01T00:00:00Z"},
             {**make_event("huge-code"), "responseStatus": {"code": 1 << 63}},
             {**make_event("true-code"), "responseStatus": {"code": True}},
             {**make_event("deep"), "requestObject": "DEEP"},
             {**make_event("bad"), "user": "not-an-object"},
             make_event("good-2")]
    body = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})
    body = body.replace(b'"DEEP"', b"[" * 2000 + b"]" * 2000)
    for _ in range(2):
        status, answer = env.post(body, token=TOKEN)
        assert status == 200 and answer == {"events": 6, "rejected": 1}, answer
    assert env.stored() == 6
