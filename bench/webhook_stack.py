"""Can the audit webhook move onto uvicorn (the dashboard's server)? Measure the webhook's defences on both.

Each scenario runs against (a) uvicorn 0.x + h11 serving a minimal ASGI app that answers 401 unless
a bearer token is presented — the best a webhook on uvicorn could do with uvicorn's own settings
(``limit_concurrency``, ``timeout_keep_alive``) — and (b) kubetrail's webhook server
(``sources/_webhook_http.py`` via ``AuditWebhookReceiver``, TLS, the same limits). Plain HTTP is
used for uvicorn: TLS changes none of these results, and the webhook cannot be run without it.

    slowloris      one header byte per second: is the connection still open after HOLD seconds?
    idle flood     FLOOD connections that send nothing: how many are still open after HOLD
                   seconds, and does an authenticated request still get through meanwhile?
    one client     one address opens PER_CLIENT+8 connections: how many does the server keep?
    client cert    is the verified client certificate visible to the application (ASGI scope)?

Prints one line per scenario and server; the figures go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubetrail.sources.audit_webhook import AuditWebhookConfig, AuditWebhookReceiver
from kubetrail.web.serving import BackgroundServer

TOKEN = "bench-token"
SCOPES: list[dict[str, Any]] = []


async def asgi_webhook(scope: Any, receive: Any, send: Any) -> None:
    SCOPES.append(dict(scope))
    headers = dict(scope.get("headers", []))
    ok = headers.get(b"authorization") == f"Bearer {TOKEN}".encode()
    while ok:  # an authorised batch is read whole and committed before the answer (200 after commit)
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    body = b'{"events": 0}' if ok else b'{"error": "unauthorized"}'
    await send({"type": "http.response.start", "status": 200 if ok else 401,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def pki(d: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (d / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    (d / "tokens").write_text(f"{TOKEN},bench\n")


class Target:
    def __init__(self, name: str, port: int, tls: ssl.SSLContext | None) -> None:
        self.name, self.port, self.tls = name, port, tls

    def connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        if self.tls is not None:
            s = self.tls.wrap_socket(s, server_hostname="localhost")
        return s

    def authorised_request(self) -> int | str:
        conn: http.client.HTTPConnection
        if self.tls is not None:
            conn = http.client.HTTPSConnection("localhost", self.port, context=self.tls, timeout=10)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", "/", body=b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}',
                         headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
            return conn.getresponse().status
        except OSError as exc:
            return type(exc).__name__
        finally:
            conn.close()


def is_open(s: socket.socket) -> bool:
    """Still open: the server has neither closed it nor answered (a 408/400 with close counts as closed)."""
    s.setblocking(False)
    try:
        data = s.recv(1)
        return data == b"" and False
    except (BlockingIOError, ssl.SSLWantReadError):
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)


def slowloris(t: Target, hold: float) -> str:
    s = t.connect()
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
    start = time.monotonic()
    try:
        while time.monotonic() - start < hold:
            try:
                s.sendall(b"X")
            except OSError:
                return f"cut after {time.monotonic() - start:.1f}s"
            time.sleep(1.0)
            if not is_open(s):
                return f"cut after {time.monotonic() - start:.1f}s"
        return f"still open after {hold:.0f}s"
    finally:
        s.close()


def idle_flood(t: Target, n: int, hold: float) -> str:
    socks = []
    for _ in range(n):
        try:
            socks.append(t.connect())
        except OSError:
            break
    time.sleep(1.0)
    during = t.authorised_request()
    time.sleep(max(hold - 1.0, 0))
    still = sum(1 for s in socks if is_open(s))
    for s in socks:
        s.close()
    return f"{len(socks)} opened, {still} still open after {hold:.0f}s; authorised request meanwhile: {during}"


def one_client(t: Target, per_client: int) -> str:
    """Authenticated requests whose bodies never come: each holds a connection of one client."""
    socks = []
    for _ in range(per_client + 8):
        try:
            s = t.connect()
            s.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode())
            socks.append(s)
        except OSError:
            pass
    time.sleep(1.5)
    kept = sum(1 for s in socks if is_open(s))
    for s in socks:
        s.close()
    return f"{per_client + 8} stalled authenticated requests from one client, {kept} held open (limit wanted: {per_client})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hold", type=float, default=12.0, help="seconds to hold slow/idle connections")
    p.add_argument("--flood", type=int, default=100, help="idle connections in the flood")
    args = p.parse_args()
    limit, per_client, header_timeout = 64, 16, 5.0
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pki(d)
        uv = BackgroundServer(asgi_webhook, "127.0.0.1:0").start()
        uv.server.config.limit_concurrency = limit  # as a webhook on uvicorn would set it
        commits: list[int] = []
        hook = AuditWebhookReceiver(AuditWebhookConfig(
            listen_address="127.0.0.1:0", tls_cert_file=str(d / "tls.crt"), tls_key_file=str(d / "tls.key"),
            bearer_token_file=str(d / "tokens"), header_timeout_secs=header_timeout, max_connections=limit,
            max_connections_per_client=per_client), lambda *a: commits.append(1))
        hook.start()
        client_tls = ssl.create_default_context(cafile=str(d / "tls.crt"))
        targets = [Target("uvicorn", uv.address[1], None), Target("kubetrail webhook", hook.address[1], client_tls)]
        print(f"python {sys.version.split()[0]}; hold {args.hold:.0f}s; header_timeout_secs {header_timeout:.0f}; "
              f"max_connections {limit}; max_connections_per_client {per_client}")
        try:
            for t in targets:
                print(f"{t.name:>18} slowloris:  {slowloris(t, args.hold)}")
            for t in targets:
                print(f"{t.name:>18} idle flood: {idle_flood(t, args.flood, args.hold)}")
            for t in targets:
                print(f"{t.name:>18} one client: {one_client(t, per_client)}")
            keys = sorted({k for s in SCOPES for k in s})
            cert = any("cert" in str(k).lower() or "tls" in str(k).lower() for k in keys)
            print(f"{'uvicorn':>18} client cert in the ASGI scope: {'yes' if cert else 'no'} (scope keys: "
                  f"{', '.join(keys)})")
            print(f"{'kubetrail webhook':>18} client cert: authorised by CN after the handshake, before any byte "
                  "of the request is read")
        finally:
            uv.stop()
            hook.stop(grace_secs=1)
            threading.Event().wait(0.1)


if __name__ == "__main__":
    main()
