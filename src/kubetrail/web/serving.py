"""Run an ASGI app on uvicorn in a background thread: the one HTTP server stack of kubetrail.

``kubetrail serve`` (the dashboard and API) and the ``telemetry.listen_address`` endpoint of
``run``/``agent``/``collector`` both go through ``BackgroundServer``. The socket is bound here,
before the thread starts, so a busy or forbidden address is a clear error at start-up and port 0
works (``address`` tells the port). ``stop()`` lets requests in flight finish, then returns.

uvicorn installs no signal handlers outside the main thread: the command keeps its own.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

from kubetrail.errors import UnavailableError

ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


def parse_listen(value: str, what: str = "listen address") -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) -> (host, port); a clear error otherwise."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UnavailableError(f"{what} {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


def bind(value: str, what: str = "listen address") -> socket.socket:
    host, port = parse_listen(value, what)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UnavailableError(f"cannot listen on {value} ({what}): {exc.strerror or exc}") from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class TLSFiles:
    """Server certificate and, optionally, the CA that signs accepted client certificates."""

    def __init__(self, cert_file: str, key_file: str, client_ca_file: str = "") -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.client_ca_file = client_ca_file

    def check(self) -> None:
        """Load once now so a wrong file is an error at start-up, not at the first connection."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
            if self.client_ca_file:
                ctx.load_verify_locations(cafile=self.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise UnavailableError(f"cannot load the TLS files: {exc}") from exc


class BackgroundServer:
    def __init__(self, app: ASGIApp, listen: str, *, what: str = "listen address", tls: TLSFiles | None = None,
                 http: type[asyncio.Protocol] | str = "h11") -> None:
        if tls is not None:
            tls.check()
        self.sock = bind(listen, what)
        kwargs: dict[str, Any] = {}
        if tls is not None:
            kwargs = {"ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
            if tls.client_ca_file:
                kwargs |= {"ssl_ca_certs": tls.client_ca_file, "ssl_cert_reqs": ssl.CERT_OPTIONAL}
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, http=http,
                                server_header=False, date_header=True, timeout_keep_alive=5,
                                timeout_graceful_shutdown=10, **kwargs)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name=f"http {listen}", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def start(self, wait_secs: float = 10.0) -> BackgroundServer:
        self.thread.start()
        deadline = threading.Event()
        for _ in range(int(wait_secs / 0.02)):
            if self.server.started or not self.thread.is_alive():
                break
            deadline.wait(0.02)
        if not self.server.started:
            raise UnavailableError(f"the HTTP server on {self.address[0]}:{self.address[1]} did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
