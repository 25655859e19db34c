"""HTTP plumbing of the audit webhook: TLS per connection, the request gate, graceful drain.

Kept apart from ``audit_webhook`` so that module reads as the protocol (who may send, what is
stored); this one is how bytes move. The TLS handshake runs in the connection's own thread, so
a slow client never blocks ``accept()``. Between requests a connection is *idle*; ``drain`` closes
idle connections at once and waits for busy ones, so a batch being committed still gets its 200.

Until a connection is authenticated (a verified client certificate right after the handshake, or
a valid token once the first request's headers are in) it is *pending*: it must finish the TLS
handshake, request line and headers within ``header_timeout_secs`` in total (a client trickling a
byte at a time is cut, whatever the per-read timeout), and at most
``max_unauthenticated_connections`` are pending at once — a new connection closes the oldest
pending one rather than being refused, so strangers can never hold every slot. An authenticated
client holds at most ``max_connections_per_client`` connections: a certificate client over it is
closed right after the handshake, a token client gets 429 — so one client cannot hold them all.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from kubetrail.sources.audit_webhook import AuditWebhookReceiver

log = logging.getLogger("kubetrail.sources.audit_webhook")

# After an early error (401/413) a client may still be sending its body; reading a little of it
# lets the client see the answer instead of a connection reset. Bounded: never the whole body.
DRAIN_AFTER_ERROR_BYTES = 256 * 1024
DRAIN_AFTER_ERROR_SECS = 1.0


class WebhookHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The listen backlog: socketserver's default of 5 drops connections under an ordinary burst
    # of apiserver retries before accept() ever sees them. The kernel caps it at somaxconn.
    request_queue_size = socket.SOMAXCONN

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily,
                 receiver: AuditWebhookReceiver) -> None:
        self.address_family = family
        self.receiver = receiver
        self.stopping = threading.Event()
        self.handlers: set[WebhookHandler] = set()
        self.handlers_lock = threading.Condition()
        self.slots = threading.BoundedSemaphore(receiver.config.max_connections)
        # Pending (not yet authenticated) connections, oldest first: accepted socket -> [deadline,
        # the socket to cut (the TLS one once it exists)].
        self.pending: dict[Any, list[Any]] = {}
        self.pending_lock = threading.Lock()
        # Open connections per authenticated client: one client (a token, a certificate CN) may
        # hold at most max_connections_per_client of them, so it cannot hold every slot.
        self.claims: dict[Any, str] = {}
        self.per_client: dict[str, int] = {}
        super().__init__(address, WebhookHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # A thread per connection, but never more than max_connections: refuse the rest at once.
        config = self.receiver.config
        evicted = False
        with self.pending_lock:
            while len(self.pending) >= min(config.max_unauthenticated_connections, config.max_connections):
                self._cut(next(iter(self.pending)), "unauthenticated_evicted")
                evicted = True
        # An evicted connection's thread ends within moments; give its slot that long.
        got = self.slots.acquire(timeout=0.5) if evicted else self.slots.acquire(blocking=False)
        if not got:
            self.receiver.batches.count("connections_refused")
            self.shutdown_request(request)
            return
        with self.pending_lock:
            self.pending[request] = [time.monotonic() + config.header_timeout_secs, request]
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(request)
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)
            self.slots.release()

    def _cut(self, key: Any, counter: str) -> None:
        """Drop a pending connection (caller holds ``pending_lock``); its thread then ends."""
        _, sock = self.pending.pop(key)
        self.receiver.batches.count(counter)
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the TCP socket under any TLS

    def _forget(self, key: Any) -> None:
        with self.pending_lock:
            self.pending.pop(key, None)

    def claim(self, conn: Any, client: str) -> bool:
        """Count ``conn`` against ``client``'s connections; False when the client is at its limit."""
        with self.pending_lock:
            if conn in self.claims:
                return True
            if self.per_client.get(client, 0) >= self.receiver.config.max_connections_per_client:
                self.receiver.batches.count("client_limit_refused")
                return False
            self.claims[conn] = client
            self.per_client[client] = self.per_client.get(client, 0) + 1
            return True

    def release(self, conn: Any) -> None:
        with self.pending_lock:
            client = self.claims.pop(conn, None)
            if client is not None:
                self.per_client[client] -= 1
                if not self.per_client[client]:
                    del self.per_client[client]

    def authenticated(self, conn: Any) -> None:
        """``conn`` proved who it is: no header deadline any more, and it leaves the pending pool."""
        with self.pending_lock:
            for key, (_, sock) in list(self.pending.items()):
                if sock is conn or key is conn:
                    del self.pending[key]

    def service_actions(self) -> None:
        # Runs every poll interval in the serving thread: cut pending connections past the deadline.
        super().service_actions()
        now = time.monotonic()
        with self.pending_lock:
            for key in [k for k, (deadline, _) in self.pending.items() if deadline <= now]:
                self._cut(key, "header_timeouts")

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (a DNS query); nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        config = self.receiver.config
        request.settimeout(min(config.header_timeout_secs, config.read_timeout_secs))
        try:
            conn = self.receiver.tls_context().wrap_socket(request, server_side=True,
                                                           do_handshake_on_connect=False)
        except (ssl.SSLError, OSError) as exc:
            self.receiver.batches.count("tls_failed")
            log.info("audit_webhook: TLS setup with %s failed: %s", client_address[0], exc)
            return
        try:
            with self.pending_lock:
                if request in self.pending:
                    self.pending[request][1] = conn  # the live socket to cut from now on
            try:
                conn.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                self.receiver.batches.count("tls_failed")
                log.info("audit_webhook: TLS handshake with %s failed: %s", client_address[0], exc)
                return
            client = self.receiver.authenticate(conn, None)
            if client is not None:
                if not self.claim(conn, client):
                    log.info("audit_webhook: %s (%s) is at max_connections_per_client; closed", client,
                             client_address[0])
                    return
                self.authenticated(conn)
            conn.settimeout(config.read_timeout_secs)
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            self.release(conn)
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        level = logging.DEBUG if isinstance(exc, ConnectionError | TimeoutError) else logging.WARNING
        log.log(level, "audit_webhook: connection from %s ended: %r", client_address[0], exc)

    def drain(self, grace_secs: float) -> None:
        """Close idle connections; wait up to ``grace_secs`` for busy ones, then close those too."""
        self.stopping.set()
        deadline = time.monotonic() + grace_secs
        with self.handlers_lock:
            while True:
                for h in list(self.handlers):
                    if h.idle or time.monotonic() >= deadline:
                        h.abort()
                if not self.handlers or time.monotonic() >= deadline + 1:
                    return
                self.handlers_lock.wait(0.1)


class WebhookHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubetrail-webhook"
    sys_version = ""
    server: WebhookHTTPServer
    request: ssl.SSLSocket

    @property
    def tls(self) -> ssl.SSLSocket:
        """The client's TLS socket (``request``, which socketserver also calls ``connection``)."""
        return self.request

    def setup(self) -> None:
        super().setup()
        self.idle = True
        self._principal: str | None = None
        with self.server.handlers_lock:
            self.server.handlers.add(self)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.handlers_lock:
                self.server.handlers.discard(self)
                self.server.handlers_lock.notify_all()

    def abort(self) -> None:
        """Cut the connection under the handler (idle: it just ends; busy: the client retries)."""
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.tls, socket.SHUT_RDWR)  # the TCP socket, not TLS

    def handle_one_request(self) -> None:
        self.idle = True
        if self.server.stopping.is_set():
            self.close_connection = True
            return
        super().handle_one_request()
        self.idle = True

    def parse_request(self) -> bool:
        self.idle = False
        self._principal = None
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("audit_webhook: %s %s", self.address_string(), format % args)

    # -- answers ---------------------------------------------------------------------------------
    def _answer(self, code: int, payload: dict[str, Any], close: bool = False) -> None:
        body = orjson.dumps(payload)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if code == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="kubetrail"')
        if close or self.server.stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        # Counted before the client can see the answer: a caller that reads /metrics (or a test)
        # right after its response must find it counted.
        self.server.receiver.batches.count(f"http_{code}")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _refuse(self, code: int, message: str, expect_continue: bool = False) -> None:
        """Answer an error before the body was read, and close (the body is never read in full)."""
        self._answer(code, {"error": message}, close=True)
        if expect_continue:
            return
        try:
            raw = (self.headers.get("Content-Length") or "0").strip()
            remaining = min(int(raw) if raw.isascii() and raw.isdigit() else 0, DRAIN_AFTER_ERROR_BYTES)
        except ValueError:
            return
        deadline = time.monotonic() + DRAIN_AFTER_ERROR_SECS
        try:
            self.tls.settimeout(DRAIN_AFTER_ERROR_SECS)
            while remaining > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)
        except (OSError, ValueError):
            pass

    def _gate(self, expect_continue: bool = False) -> bool:
        """Authentication and size checks, before any of the body is read. False: refused."""
        if self._principal is not None:
            return True
        receiver = self.server.receiver
        principal = receiver.authenticate(self.tls, self.headers.get("Authorization"))
        if principal is None:
            self._refuse(401, "unauthenticated: a client certificate or bearer token is required", expect_continue)
            return False
        if self.command != "POST":
            self._refuse(405, "only POST is accepted", expect_continue)
            return False
        if self.headers.get("Transfer-Encoding"):
            self._refuse(411, "send a Content-Length; chunked bodies are not accepted", expect_continue)
            return False
        if self.headers.get("Content-Encoding", "identity").lower() != "identity":
            self._refuse(415, "compressed bodies are not accepted", expect_continue)
            return False
        lengths = {v.strip() for v in self.headers.get_all("Content-Length") or ()}
        if len(lengths) > 1:
            self._refuse(400, "conflicting Content-Length headers", expect_continue)
            return False
        raw = lengths.pop() if lengths else None
        if raw is None or not (raw.isascii() and raw.isdigit()):  # "²".isdigit() is True
            self._refuse(411, "a valid Content-Length is required", expect_continue)
            return False
        if int(raw) > receiver.config.max_body_bytes:
            self._refuse(413, f"body over {receiver.config.max_body_bytes} bytes", expect_continue)
            return False
        if not self.server.claim(self.tls, principal):
            self._refuse(429, "too many connections from this client (max_connections_per_client)", expect_continue)
            return False
        self._principal = principal
        self.server.authenticated(self.tls)
        return True

    def handle_expect_100(self) -> bool:
        # Refuse before the client sends the body when it asked first (Expect: 100-continue).
        if not self._gate(expect_continue=True):
            return False
        return super().handle_expect_100()

    def do_POST(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's naming
        if not self._gate():
            return
        body = self._read_body(int(self.headers["Content-Length"].strip()))
        if body is None:  # the client went away or was too slow: nothing to answer, nothing stored
            self.close_connection = True
            return
        code, payload = self.server.receiver.batches.accept(body, self._principal or "", self.client_address[0])
        self._answer(code, payload, close=code != 200)

    def _read_body(self, length: int) -> bytes | None:
        """The whole body within read_timeout_secs (the apiserver's own limit is 30 s), or None."""
        timeout = self.server.receiver.config.read_timeout_secs
        deadline = time.monotonic() + timeout
        parts: list[bytes] = []
        got = 0
        while got < length:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.tls.settimeout(left)
            chunk = self.rfile.read1(min(length - got, 1 << 20))
            if not chunk:
                return None
            parts.append(chunk)
            got += len(chunk)
        self.tls.settimeout(timeout)
        return b"".join(parts)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.split("?", 1)[0] in ("/healthz", "/livez", "/readyz"):
            self._answer(200, {"status": "ok"})
            return
        if self.path.split("?", 1)[0] == "/metrics":  # unauthenticated, like the probes: counters only
            body = self.server.receiver.batches.metrics()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            return
        self._gate()  # 401 unless authenticated, then 405

    def _other_method(self) -> None:
        self._gate()

    do_PUT = do_DELETE = do_PATCH = _other_method  # noqa: N815
