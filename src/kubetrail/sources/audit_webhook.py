"""Receive the kube-apiserver's audit webhook backend (``--audit-webhook-config-file``) over HTTPS.

The apiserver POSTs an ``audit.k8s.io`` ``EventList`` per batch (one event per POST in the blocking
modes) and retries any non-2xx answer up to five times, so the contract is:

* TLS always; a client is either a certificate verified against ``client_ca_file`` (optionally
  restricted to ``client_names``) or a bearer token listed in ``bearer_token_file``. Anything else:
  401, before a byte of the body is read.
* ``Content-Length`` over ``max_body_bytes``: 413, without reading the body. No length (chunked): 411.
* Not JSON, or not an EventList / Event / JSON array of events: 400 and nothing is stored. Items
  of an EventList that are not events are written to the rejects file next to the good ones.
* 200 only after ``commit`` has returned, i.e. after the store committed the batch. A commit that
  fails answers 503 and the apiserver sends the batch again; the store's content keys make the
  redelivery a no-op.

Positions are ``webhook:<remote address>:<request number>``; nothing is resumable, so nothing is
written to ``source_positions``. Batches are committed one at a time (the store has one writer).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec
import orjson

from kubetrail import telemetry
from kubetrail.errors import SourceError, SourceUnavailableError
from kubetrail.record import Decoded, Rejected, SourceRef
from kubetrail.sources.formats import check_event, guarded, loads_lossy, noted

if TYPE_CHECKING:
    # ssl and the HTTP server are imported when a receiver is built: the config names
    # ``AuditWebhookConfig`` in every command, and they cost ~12 ms of start-up that ``ingest`` never uses.
    import ssl

    from kubetrail.sources._webhook_http import WebhookHTTPServer

log = logging.getLogger("kubetrail.sources.audit_webhook")

Commit = Callable[[list[Decoded], list[Rejected], SourceRef, dict[str, str]], object]

MIB = 1024 * 1024


class AuditWebhookConfig(msgspec.Struct, tag="audit_webhook", tag_field="type", frozen=True, kw_only=True,
                         forbid_unknown_fields=True):
    """``sources[]`` entry. In a cluster, bind ``0.0.0.0:8443`` (the default only listens locally)."""

    listen_address: str = "127.0.0.1:8443"
    tls_cert_file: str = ""
    tls_key_file: str = ""
    client_ca_file: str = ""
    # Accepted client-certificate subject CNs (as the apiserver's x509 authenticator names a client:
    # the CN only, never a SAN); empty = any cert the CA signed that has exactly one CN.
    client_names: list[str] = []
    # CSV lines ``token[,name[,...]]`` (quoted fields as in the apiserver's static token file).
    bearer_token_file: str = ""
    max_body_bytes: int = 16 * MIB
    read_timeout_secs: float = 30.0
    # TLS handshake + request line + headers of a connection's first request, in total: a client
    # that trickles its headers cannot hold a connection slot longer than this.
    header_timeout_secs: float = 5.0
    max_connections: int = 64
    # Connections not yet authenticated (no verified certificate, no token checked yet). When they
    # are all taken, the oldest is closed to make room: they cannot starve the apiserver. (At most
    # max_connections, whatever this says.)
    max_unauthenticated_connections: int = 16
    # Connections one authenticated client (token name or certificate CN) may hold at once.
    max_connections_per_client: int = 16
    node: str = ""

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) pairs for config validation; empty when the entry is usable."""
        out: list[tuple[str, str]] = []
        if not self.tls_cert_file or not self.tls_key_file:
            out.append(("tls_cert_file", "the webhook always uses TLS: set tls_cert_file and tls_key_file"))
        if not self.client_ca_file and not self.bearer_token_file:
            out.append(("client_ca_file", "set client_ca_file and/or bearer_token_file (clients must authenticate)"))
        if self.max_body_bytes <= 0 or self.read_timeout_secs <= 0 or self.max_connections <= 0:
            out.append(("max_body_bytes", "max_body_bytes, read_timeout_secs and max_connections must be > 0"))
        if self.header_timeout_secs <= 0:
            out.append(("header_timeout_secs", "header_timeout_secs must be > 0"))
        if self.max_unauthenticated_connections <= 0:
            out.append(("max_unauthenticated_connections", "max_unauthenticated_connections must be > 0"))
        if self.max_connections_per_client <= 0:
            out.append(("max_connections_per_client", "max_connections_per_client must be > 0"))
        try:
            parse_listen_address(self.listen_address)
        except ValueError as exc:
            out.append(("listen_address", str(exc)))
        return out


def parse_listen_address(value: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (all interfaces)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class BearerTokens:
    """Tokens from a file, re-read when the file changes; compared in constant time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._sig: tuple[int, int, int] | None = None
        self._digests: list[tuple[bytes, str]] = []
        self._lock = threading.Lock()
        self._reload()
        if not self._digests:
            raise SourceError(f"{path}: no bearer tokens in the file")

    def _reload(self) -> None:
        try:
            st = os.stat(self.path)
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
            if sig == self._sig:
                return
            with open(self.path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except OSError as exc:
            if self._sig is None:
                raise SourceError(f"cannot read bearer_token_file {self.path}: {exc.strerror or exc}") from exc
            log.warning("cannot re-read bearer_token_file %s: %s; keeping the previous tokens", self.path, exc)
            return
        digests = []
        for i, line in enumerate(lines):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:  # CSV as the apiserver reads its --token-auth-file: quoted fields may hold commas
                fields = next(csv.reader([line], skipinitialspace=True, strict=True))
            except (csv.Error, StopIteration):
                log.warning("bearer_token_file %s: line %d is not valid CSV; skipped", self.path, i + 1)
                continue
            token = fields[0].strip() if fields else ""
            if not token:
                continue
            name = (fields[1].strip() if len(fields) > 1 else "") or f"token{i + 1}"
            digests.append((hashlib.sha256(token.encode()).digest(), name))
        with self._lock:
            self._digests, self._sig = digests, sig

    def match(self, presented: str) -> str | None:
        """The token's name, or None. Every token is compared, so timing says nothing about which."""
        self._reload()
        digest = hashlib.sha256(presented.encode("utf-8", "replace")).digest()
        found = None
        with self._lock:
            for candidate, name in self._digests:
                if hmac.compare_digest(digest, candidate) and found is None:
                    found = name
        return found


def cert_common_name(cert: dict[str, Any]) -> str | None:
    """The subject CN, which is how kube-apiserver's x509 authenticator names a client (SANs name
    servers, not users). None without a CN, or with several: a certificate that could be read as
    two different names is refused rather than guessed at."""
    names = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    return names[0] if len(names) == 1 and names[0] else None


# ``WebhookBatches.count`` names -> the telemetry event that moves the same-named metric
# (kubetrail_webhook_<name>_total; the names are those of the former hand-written /metrics).
_REFUSALS: dict[str, telemetry.WebhookRefusal] = {
    "connections_refused": "connections_refused", "header_timeouts": "header_timeouts",
    "unauthenticated_evicted": "unauthenticated_evicted", "client_limit_refused": "client_limit_refused"}


class WebhookBatches:
    """What happens to a body once the client is authenticated: decode, commit, answer."""

    def __init__(self, commit: Commit, source: SourceRef) -> None:
        self.commit = commit
        self.source = source
        self.counts: dict[str, int] = {}
        self._commit_lock = threading.Lock()  # one batch at a time: the store has one writer
        self._counter_lock = threading.Lock()
        self._requests = 0

    def count(self, name: str, n: int = 1) -> None:
        """Count one happening in this receiver's ``counts`` and as a telemetry event."""
        with self._counter_lock:
            self.counts[name] = self.counts.get(name, 0) + n
        if name.startswith("http_"):
            telemetry.emit(telemetry.WebhookResponseSent(int(name[5:])))
        elif name == "tls_failed":
            telemetry.emit(telemetry.WebhookHandshakeError())
        elif name in _REFUSALS:
            telemetry.emit(telemetry.WebhookConnectionRefused(_REFUSALS[name]))

    def metrics(self) -> bytes:
        """``GET /metrics``: the process's telemetry (kubetrail.telemetry) in the Prometheus text
        format; no secret is in it."""
        return telemetry.render()[0]

    def accept(self, body: bytes, principal: str, remote: str) -> tuple[int, dict[str, Any]]:
        """Decode and commit one POSTed body; returns (HTTP status, JSON answer)."""
        with self._counter_lock:
            self._requests += 1
            position = f"webhook:{remote}:{self._requests}"
        try:
            obj, note = loads_lossy(body)  # an event nested too deep is kept, cut (formats.cut_deep)
        except orjson.JSONDecodeError:
            return 400, {"error": "the body is not valid JSON"}
        why = _shape_problem(obj)
        if why:
            return 400, {"error": why}
        decoded: list[Decoded] = []
        rejected: list[Rejected] = []
        try:
            for item in noted(iter(decode_batch(obj, position)), note):
                (decoded if isinstance(item, Decoded) else rejected).append(item)
        except Exception as exc:  # noqa: BLE001 - bad input is a 400, never a dropped connection or 5xx
            log.info("audit_webhook: %s could not be decoded: %r", position, exc)
            return 400, {"error": "the body could not be decoded as audit events"}
        if rejected and not decoded:
            return 400, {"error": f"no audit events in the body: {rejected[0].reason}"}
        source = msgspec.structs.replace(self.source, stream=f"audit-webhook:{principal}")
        try:
            with self._commit_lock:
                self.commit(decoded, rejected, source, {})
        except Exception as exc:  # noqa: BLE001 - the apiserver retries a 5xx; never a traceback
            log.error("audit_webhook: commit of %s failed: %s", position, exc)
            return 503, {"error": "the batch could not be stored; retry"}
        self.count("events", len(decoded))
        self.count("rejected", len(rejected))
        telemetry.emit(telemetry.WebhookEventsAccepted(len(decoded), len(rejected)))
        return 200, {"events": len(decoded), "rejected": len(rejected)}


class AuditWebhookReceiver:
    """The HTTPS server. ``start()`` binds and serves in a thread; ``stop()`` drains and closes."""

    def __init__(self, config: AuditWebhookConfig, commit: Commit, cluster: str = "") -> None:
        problems = config.problems()
        if problems:
            raise SourceError("; ".join(f"{field}: {msg}" for field, msg in problems))
        self.config = config
        self.batches = WebhookBatches(commit, SourceRef(cluster=cluster, node=config.node))
        self.counts = self.batches.counts  # events, rejected, http_<code>, tls_failed
        self.tokens = BearerTokens(config.bearer_token_file) if config.bearer_token_file else None
        self._tls_sig: tuple[int, ...] | None = None
        self._context = self._load_tls()
        self._httpd: WebhookHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- TLS and authentication -----------------------------------------------------------------
    def _tls_files(self) -> list[str]:
        c = self.config
        return [f for f in (c.tls_cert_file, c.tls_key_file, c.client_ca_file) if f]

    def _load_tls(self) -> ssl.SSLContext:
        import ssl

        c = self.config
        what = "tls_cert_file/tls_key_file"
        try:
            self._tls_sig = tuple(os.stat(f).st_mtime_ns for f in self._tls_files())
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(c.tls_cert_file, c.tls_key_file)
            if c.client_ca_file:
                what = "client_ca_file"
                ctx.load_verify_locations(cafile=c.client_ca_file)
                ctx.verify_mode = ssl.CERT_OPTIONAL  # token clients present no certificate
        except (OSError, ssl.SSLError) as exc:
            files = c.client_ca_file if what == "client_ca_file" else f"{c.tls_cert_file}, {c.tls_key_file}"
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SourceUnavailableError(f"audit_webhook: cannot load {what} ({files}): {reason}") from exc
        return ctx

    def tls_context(self) -> ssl.SSLContext:
        """The current context; rebuilt when a certificate file changes (cert-manager rotation)."""
        try:
            sig = tuple(os.stat(f).st_mtime_ns for f in self._tls_files())
        except OSError:
            return self._context
        if sig != self._tls_sig:
            try:
                self._context = self._load_tls()
                log.info("audit_webhook: reloaded TLS certificates")
            except SourceError as exc:
                log.warning("%s; keeping the previous certificates", exc)
                self._tls_sig = sig
        return self._context

    def authenticate(self, conn: ssl.SSLSocket, authorization: str | None) -> str | None:
        """The client's name (certificate CN or token name), or None when it is not authenticated.
        Called with no ``authorization`` right after the handshake: a certificate client is known
        before it sends a byte, and leaves the unauthenticated pool at once."""
        if self.config.client_ca_file:
            cert = conn.getpeercert()
            if cert:  # non-empty only when the handshake verified it against client_ca_file
                name = cert_common_name(cert)
                if name is not None and (not self.config.client_names or name in self.config.client_names):
                    return name
        if self.tokens is not None and authorization:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return self.tokens.match(value.strip())
        return None

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): useful with port 0."""
        if self._httpd is None:
            raise SourceError("audit_webhook is not started")
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        import socket

        from kubetrail.sources._webhook_http import WebhookHTTPServer

        host, port = parse_listen_address(self.config.listen_address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._httpd = WebhookHTTPServer((host, port), family, self)
        except OSError as exc:
            raise SourceUnavailableError(f"audit_webhook cannot listen on {self.config.listen_address}: {exc}") from exc
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="audit-webhook", daemon=True)
        self._thread.start()
        log.info("audit_webhook listening on %s:%d", *self.address)

    def stop(self, grace_secs: float = 30.0) -> None:
        """Stop accepting, let requests in flight finish (up to ``grace_secs``), close the rest."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.drain(grace_secs)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def decode_batch(obj: Any, position: str) -> list[Decoded | Rejected]:
    """What the apiserver's webhook backend sends and nothing else: an EventList, a bare Event or a
    JSON array of Events, one level deep. Log-file envelopes (CloudWatch gzip, AKS, Docker, GKE) and
    nested arrays are rejected items here: no apiserver sends them, and unwrapping them would let
    a small body expand without limit."""
    if isinstance(obj, list):
        items, where, fmt = obj, [f"{position}[{i}]" for i in range(len(obj))], "array"
    elif obj.get("kind") == "EventList":
        raw = obj.get("items")
        if not isinstance(raw, list):
            return [Rejected(position, "EventList without an items list")]
        items, where, fmt = raw, [f"{position}.items[{i}]" for i in range(len(raw))], "eventlist"
    else:
        items, where, fmt = [obj], [position], "event"
    out: list[Decoded | Rejected] = []
    for item, pos in zip(items, where, strict=True):
        out += guarded(_checked(item, fmt, pos), pos)  # one odd item costs itself, not the batch
    return out


def _checked(item: Any, fmt: str, position: str) -> Iterator[Decoded | Rejected]:
    reason = check_event(item)
    yield Rejected(position, reason) if reason else Decoded(item, fmt, position)


def _shape_problem(obj: Any) -> str | None:
    """Why the top level is not something the webhook backend sends (EventList, Event, array)."""
    if isinstance(obj, list):
        return None
    if not isinstance(obj, dict):
        return f"expected an audit.k8s.io EventList, got a JSON {type(obj).__name__}"
    kind = obj.get("kind")
    api = obj.get("apiVersion")
    if api is not None and not (isinstance(api, str) and api.startswith("audit.k8s.io/")):
        return "expected an audit.k8s.io EventList, got another apiVersion"
    if kind == "EventList" or (kind in (None, "Event") and "auditID" in obj):
        return None
    return "expected an audit.k8s.io EventList"


class AuditWebhookSource:
    """The live-source face for ``pipeline.build_sources``: serves until ``stop`` is set."""

    def __init__(self, config: AuditWebhookConfig, cluster: str = "") -> None:
        self.config = config
        self.cluster = cluster

    def run(self, commit: Commit, load_position: Callable[[str], str | None], stop: threading.Event) -> None:
        receiver = AuditWebhookReceiver(self.config, commit, self.cluster)
        receiver.start()
        try:
            stop.wait()
        finally:
            receiver.stop()


def build(config: AuditWebhookConfig, commit: Commit, cluster: str = "") -> AuditWebhookReceiver:
    """A receiver that is ready to ``start()``; raises ``SourceError`` for unusable TLS/auth files."""
    return AuditWebhookReceiver(config, commit, cluster)
