"""`kubetrail webhook-config` (the apiserver's kubeconfig) and `kubetrail webhook serve` (standalone).

The kubeconfig names files by path as the apiserver sees them; only the CA can be embedded
(``--embed-ca``), so no private key or token is ever printed.
"""

from __future__ import annotations

import base64
import signal
import threading
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import click
import yaml

from kubetrail.cli.options import store_options
from kubetrail.errors import ConfigError, InputError

CLUSTER_NAME = "kubetrail"
USER_NAME = "kube-apiserver"


def kubeconfig(server: str, ca_file: str | None = None, client_cert: str | None = None,
               client_key: str | None = None, token_file: str | None = None, embed_ca: bool = False) -> dict[str, object]:
    """The ``--audit-webhook-config-file`` document (a kubeconfig, loaded by client-go clientcmd)."""
    parts = urlsplit(server)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError("--server", f"{server!r} is not an https:// URL (the receiver only speaks TLS)")
    if bool(client_cert) != bool(client_key):
        raise ConfigError("--client-cert", "--client-cert and --client-key go together")
    if client_cert and token_file:
        raise ConfigError("--token-file", "use a client certificate or a token file, not both")
    if not client_cert and not token_file:
        raise ConfigError("--client-cert", "give --client-cert/--client-key or --token-file: the receiver "
                          "answers 401 to unauthenticated clients")
    cluster: dict[str, object] = {"server": server}
    if ca_file and embed_ca:
        try:
            with open(ca_file, "rb") as fh:
                pem = fh.read()
        except OSError as exc:
            raise InputError(f"{ca_file}: {exc.strerror or exc}") from exc
        if b"-----BEGIN CERTIFICATE-----" not in pem:
            raise InputError(f"{ca_file}: not a PEM certificate")
        cluster["certificate-authority-data"] = base64.b64encode(pem).decode()
    elif ca_file:
        cluster["certificate-authority"] = ca_file
    user: dict[str, object] = {}
    if client_cert:
        user = {"client-certificate": client_cert, "client-key": client_key}
    elif token_file:
        user = {"tokenFile": token_file}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": cluster}],
        "users": [{"name": USER_NAME, "user": user}],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": USER_NAME}}],
        "current-context": CLUSTER_NAME,
    }


@click.command("webhook-config")
@click.option("--server", required=True, help="The receiver's URL, e.g. https://kubetrail.kube-system.svc:8443/.")
@click.option("--ca-file", type=click.Path(dir_okay=False),
              help="CA that signed the receiver's certificate (path on the apiserver's host).")
@click.option("--embed-ca", is_flag=True, help="Inline --ca-file as certificate-authority-data.")
@click.option("--client-cert", type=click.Path(dir_okay=False), help="Client certificate the apiserver presents.")
@click.option("--client-key", type=click.Path(dir_okay=False), help="Its private key (path only, never read).")
@click.option("--token-file", type=click.Path(dir_okay=False),
              help="File holding the bearer token (path on the apiserver's host; never read).")
def webhook_config(server: str, ca_file: str | None, embed_ca: bool, client_cert: str | None,
                   client_key: str | None, token_file: str | None) -> None:
    """Print the kubeconfig for kube-apiserver's --audit-webhook-config-file."""
    doc = kubeconfig(server, ca_file, client_cert, client_key, token_file, embed_ca)
    click.echo("# kube-apiserver --audit-webhook-config-file=<this file> --audit-webhook-mode=batch")
    click.echo(yaml.safe_dump(doc, sort_keys=False), nl=False)


@click.group("webhook")
def webhook() -> None:
    """The audit webhook receiver (the apiserver's webhook backend)."""


@webhook.command("serve")
@click.option("--listen", "listen_address", default="127.0.0.1:8443", show_default=True,
              help="host:port; use 0.0.0.0:8443 in a cluster.")
@click.option("--tls-cert", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--tls-key", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--client-ca", type=click.Path(exists=True, dir_okay=False),
              help="Accept client certificates signed by this CA.")
@click.option("--client-name", "client_names", multiple=True,
              help="Only certificates with this subject CN (SANs are not names); repeatable.")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False),
              help="Accept these bearer tokens (CSV lines token[,name], as the apiserver's token file).")
@click.option("--max-body-bytes", default=16 * 1024 * 1024, show_default=True, type=click.IntRange(min=1))
@click.option("--cluster", default="", help="Cluster name recorded with every event.")
@store_options
def serve(listen_address: str, tls_cert: str, tls_key: str, client_ca: str | None, client_names: tuple[str, ...],
          token_file: str | None, max_body_bytes: int, cluster: str, data_dir: str, location: str) -> None:
    """Receive audit batches into the store until SIGINT/SIGTERM."""
    from kubetrail.pipeline import Options, Pipeline, open_pipeline
    from kubetrail.sources.audit_webhook import AuditWebhookConfig, AuditWebhookReceiver

    config = AuditWebhookConfig(listen_address=listen_address, tls_cert_file=tls_cert, tls_key_file=tls_key,
                                client_ca_file=client_ca or "", client_names=list(client_names),
                                bearer_token_file=token_file or "", max_body_bytes=max_body_bytes)
    for field, message in config.problems():
        raise ConfigError(field, message)
    pipes: list[Pipeline] = []  # opened after the TLS files proved usable: a typo creates no store

    def commit(*batch: Any) -> object:
        return pipes[0].commit_decoded(*batch)

    receiver = AuditWebhookReceiver(config, commit, cluster)
    pipe = open_pipeline(Options(data_dir=data_dir, store=location, cluster=cluster, live=True))
    pipes.append(pipe)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        receiver.start()
        host, port = receiver.address
        click.echo(f"kubetrail webhook: listening on https://{host}:{port}/, data in {data_dir}", err=True)
        try:
            while not stop.wait(60.0):
                pipe.tick()
        finally:
            receiver.stop()
    finally:
        pipe.tick()
        pipe.close()
        pipe.store.close()
    click.echo(pipe.summary.line(), err=True)


commands: list[click.Command] = [webhook_config, webhook]
