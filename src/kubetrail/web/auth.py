"""Who may read the dashboard and the API: a bearer token from ``--token-file`` or a client
certificate signed by ``--client-ca-file``. Nobody else, except for ``/healthz``.

* Tokens: one per line (blank lines and ``#`` comments ignored), compared in constant time
  against SHA-256 digests, re-read when the file changes (rotation without a restart). A browser
  can also present the token once as ``?token=…``: it is then kept in an HttpOnly, SameSite=Strict
  cookie (``kubetrail_token``) and the page is reloaded without it, so it does not stay in the
  address bar or in ``Referer`` headers.
* Client certificates: TLS with ``CERT_OPTIONAL`` against the CA; uvicorn's h11 protocol is
  extended (``CertAwareH11``) to put the verified peer certificate of the connection into the
  request's ``scope["state"]`` — the ASGI scope has no standard place for it.
* Every answer carries strict security headers (no scripts but our own, no framing, no sniffing,
  no referrer, no caching of authenticated pages).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from uvicorn.protocols.http.h11_impl import H11Protocol

from kubetrail.errors import InputError

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "kubetrail_token"
OPEN_PATHS = ("/healthz",)
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    (b"cache-control", b"no-store"),
]


class TokenFile:
    """The accepted bearer tokens (digests only), reloaded when the file's mtime or size changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._sig: tuple[int, int] | None = None
        self._digests: list[bytes] = []
        self._lock = threading.Lock()
        self._reload()
        if not self._digests:
            raise InputError(f"--token-file {path}: no token in it (one token per line)")

    def _reload(self) -> None:
        try:
            st = os.stat(self.path)
            if (st.st_mtime_ns, st.st_size) == self._sig:
                return
            with open(self.path, encoding="utf-8") as fh:
                lines = [line.strip() for line in fh]
        except (OSError, UnicodeDecodeError) as exc:
            if self._sig is None:
                raise InputError(f"--token-file {self.path}: cannot be read ({exc})") from exc
            return  # keep the tokens we had: a rotation in progress must not lock everyone out
        self._digests = [hashlib.sha256(t.encode()).digest() for t in lines if t and not t.startswith("#")]
        self._sig = (st.st_mtime_ns, st.st_size)

    def accepts(self, token: str) -> bool:
        with self._lock:
            self._reload()
            digests = list(self._digests)
        presented = hashlib.sha256(token.encode()).digest()
        found = False
        for d in digests:  # no early exit: the time taken does not depend on which token matched
            found |= hmac.compare_digest(d, presented)
        return found


def cert_common_name(cert: dict[str, Any] | None) -> str | None:
    """The subject CN of a verified peer certificate (exactly one, non-empty), else None."""
    if not cert:
        return None
    names = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    return names[0] if len(names) == 1 and names[0] else None


class CertAwareH11(H11Protocol):
    """uvicorn's h11 protocol, plus the connection's verified client certificate in scope["state"]."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cert = transport.get_extra_info("peercert")  # {} or None unless verified against the CA
        self.app_state = {**self.app_state, "client_cert_cn": cert_common_name(cert)}


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers", [])}


def _cookie(headers: dict[bytes, bytes], name: str) -> str | None:
    for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def secure_headers(app: App) -> App:
    """Add ``SECURITY_HEADERS`` to every response (also 401s and errors)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *[(k, v) for k, v in SECURITY_HEADERS if k not in names]]
            await send(message)

        await app(scope, receive, send_with_headers)

    return wrapped


class Authenticator:
    def __init__(self, tokens: TokenFile | None, client_certs: bool) -> None:
        if tokens is None and not client_certs:
            raise InputError("serve needs --token-file or --client-ca-file: anonymous access is not offered")
        self.tokens = tokens
        self.client_certs = client_certs

    def principal(self, scope: Scope) -> str | None:
        """``cert:<CN>`` or ``token``, or None when the request is not authenticated."""
        if self.client_certs:
            cn = (scope.get("state") or {}).get("client_cert_cn")
            if cn:
                return f"cert:{cn}"
        if self.tokens is None:
            return None
        headers = _headers(scope)
        scheme, _, value = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip() and self.tokens.accepts(value.strip()):
            return "token"
        cookie = _cookie(headers, COOKIE)
        if cookie and self.tokens.accepts(cookie):
            return "token"
        return None

    def wrap(self, app: App) -> App:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
                await app(scope, receive, send)
                return
            if self.principal(scope) is not None:
                await app(scope, receive, send)
                return
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            token = query.pop("token", None)
            if token and self.tokens is not None and self.tokens.accepts(token) and scope["method"] == "GET":
                location = scope["path"] + ("?" + urlencode(query) if query else "")
                await _answer(send, 303, b"", [(b"location", location.encode()), (
                    b"set-cookie", f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/".encode()
                    + (b"; Secure" if scope.get("scheme") == "https" else b""))])
                return
            await _answer(send, 401, b'{"error": "authentication required: a bearer token or a client certificate"}\n',
                          [(b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="kubetrail"')])

        return wrapped


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
