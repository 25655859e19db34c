"""A real audit webhook receiver (TLS, token auth, the real store behind it) and a real HTTPS
client for the hostile and secrets suites: a throwaway certificate, 127.0.0.1, port 0."""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import ssl
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubetrail.pipeline import Options, Pipeline, open_pipeline
from kubetrail.sources.audit_webhook import AuditWebhookConfig, AuditWebhookReceiver

TOKEN = "hostile-suite-webhook-token-4c1d9e"


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    crt, pem = directory / "tls.crt", directory / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


class WebhookClient:
    """``with WebhookClient(tmp) as c: c.post(body)`` → (status, JSON answer)."""

    def __init__(self, root: Path, detect: bool = False, data_dir: str | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.crt, key = self_signed(root)
        tokens = root / "tokens"
        tokens.write_text(f"{TOKEN},apiserver-1\n")
        self.data_dir = data_dir or str(root / "data")
        self.pipe: Pipeline = open_pipeline(Options(data_dir=self.data_dir, detect=detect))
        config = AuditWebhookConfig(listen_address="127.0.0.1:0", tls_cert_file=str(self.crt), tls_key_file=str(key),
                                    bearer_token_file=str(tokens), max_body_bytes=64 * 1024 * 1024)
        self.receiver = AuditWebhookReceiver(config, self.pipe.commit_decoded, cluster="test")
        self.counts = self.receiver.counts

    def __enter__(self) -> WebhookClient:
        self.receiver.start()
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.receiver.stop(grace_secs=5)
        self.pipe.close()
        self.pipe.store.close()

    def post(self, body: bytes) -> tuple[int, dict[str, Any]]:
        host, port = self.receiver.address
        conn = http.client.HTTPSConnection(host, port, timeout=60,
                                           context=ssl.create_default_context(cafile=str(self.crt)))
        try:
            conn.request("POST", "/", body=body, headers={"Authorization": f"Bearer {TOKEN}",
                                                         "Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, orjson.loads(resp.read() or b"{}")
        finally:
            conn.close()

    def rejected(self) -> int:
        path = Path(self.data_dir) / "rejects.jsonl"
        return len(path.read_bytes().splitlines()) if path.exists() else 0
