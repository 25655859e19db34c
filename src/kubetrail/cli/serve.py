"""`kubetrail serve`: the dashboard, the JSON API and /metrics over the store (read-only).

`kubetrail serve [--data DIR | --store URL] [--listen 127.0.0.1:8080] [--token-file FILE]`, plus
TLS (`--tls-cert-file`, `--tls-key-file`) and client-certificate authentication
(`--client-ca-file`). Anonymous access is refused except for /healthz: give a token file, a
client CA, or both. See docs/web.md.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from kubetrail.cli.options import DEFAULT_DATA_DIR


@click.command()
@click.option("--data", "data_dir", default=None, envvar="KUBETRAIL_DATA", type=click.Path(file_okay=False),
              help=f"Data directory (store, trail keys) [default: {DEFAULT_DATA_DIR}].")
@click.option("--store", "store_url", default=None, envvar="KUBETRAIL_STORE", metavar="URL",
              help="The store: sqlite:///PATH.db or postgresql://USER@HOST/DB (default: --data's SQLite file). "
                   "See docs/storage.md.")
@click.option("--listen", default="127.0.0.1:8080", show_default=True,
              help="HOST:PORT to listen on (loopback by default; 0.0.0.0:8080 in a cluster).")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="Bearer tokens, one per line (# comments); re-read when the file changes.")
@click.option("--tls-cert-file", type=click.Path(dir_okay=False), default=None, help="Serve HTTPS with this certificate.")
@click.option("--tls-key-file", type=click.Path(dir_okay=False), default=None, help="The certificate's private key.")
@click.option("--client-ca-file", type=click.Path(dir_okay=False), default=None,
              help="Accept client certificates signed by this CA (needs --tls-cert-file).")
def serve(data_dir: str | None, store_url: str | None, listen: str, token_file: str | None,
          tls_cert_file: str | None, tls_key_file: str | None, client_ca_file: str | None) -> None:
    """Serve the dashboard and the JSON API (read-only, authenticated) until SIGINT/SIGTERM."""
    from kubetrail.store import default_data_dir, open_store
    from kubetrail.web.app import ServeContext, VerifyCache, build_app
    from kubetrail.web.auth import Authenticator, CertAwareH11, TokenFile
    from kubetrail.web.serving import BackgroundServer, TLSFiles

    location = store_url or data_dir or DEFAULT_DATA_DIR
    data = default_data_dir(location, data_dir)  # the verifier key: --data, or beside a sqlite:/// file
    if bool(tls_cert_file) != bool(tls_key_file):
        raise click.UsageError("--tls-cert-file and --tls-key-file go together")
    if client_ca_file and not tls_cert_file:
        raise click.UsageError("--client-ca-file needs --tls-cert-file/--tls-key-file (client certificates need TLS)")
    auth = Authenticator(TokenFile(token_file) if token_file else None, client_certs=bool(client_ca_file))
    # a missing or unreadable store is an error now, not per request; kept open for the server's life, so
    # each request's reopen() takes a pooled connection (PostgreSQL) instead of connecting anew
    base = open_store(location, readonly=True, data_dir=data)
    ctx = ServeContext(data_dir=data, open_store=base.reopen, verify=VerifyCache(data))
    tls = TLSFiles(tls_cert_file, tls_key_file, client_ca_file or "") if tls_cert_file and tls_key_file else None
    server = BackgroundServer(build_app(ctx, auth), listen, what="--listen", tls=tls,
                              http=CertAwareH11 if client_ca_file else "h11").start()
    host, port = server.address
    click.echo(f"kubetrail serve: http{'s' if tls else ''}://{host}:{port}/ (data {data})", err=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(0.5):
        if not server.thread.is_alive():
            break
    server.stop()
    base.close()


commands: list[click.Command] = [serve]
