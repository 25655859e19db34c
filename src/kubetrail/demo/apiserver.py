"""A stand-in Kubernetes API server: recorded list/watch responses over HTTP(S), for tests and the demo.

No API server runs here, so the enrichment and the events source are tested against this: a
``ThreadingHTTPServer`` (standard library) that serves

* ``GET <collection>`` → a ``<Kind>List`` with ``metadata.resourceVersion`` (``limit``/``continue``
  pages, ``fieldSelector=spec.nodeName=…`` and ``metadata.namespace`` filters as the real one);
* ``GET <collection>?watch=true&resourceVersion=N`` → chunked JSON lines, every change after N, then
  live changes; ``BOOKMARK`` events when ``allowWatchBookmarks`` is set and ``bookmark()`` is called;
  a version older than the last ``compact()`` gets ``{"type":"ERROR","object":{Status 410}}``;
* ``GET <collection>/<name>`` (namespaced: ``/api/v1/namespaces/<ns>/pods/<name>``) → one object.

Objects come from recordings (``load``: JSON of real list responses) and from ``put``/``delete``,
which assign resourceVersions like etcd's revision. ``disconnect()`` cuts every open watch mid-stream;
``fail_next(n, status)`` answers the next n requests with an error; ``token`` (if set) must be sent
as ``Authorization: Bearer``; a path in ``unserved`` answers 404 (an older cluster). Requests are recorded in ``requests`` for assertions.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Obj = dict[str, Any]
# collection path -> (List kind, namespaced)
COLLECTIONS = {
    "/api/v1/pods": ("PodList", True), "/api/v1/namespaces": ("NamespaceList", False),
    "/api/v1/nodes": ("NodeList", False), "/apis/apps/v1/replicasets": ("ReplicaSetList", True),
    "/apis/batch/v1/jobs": ("JobList", True), "/apis/events.k8s.io/v1/events": ("EventList", True),
    "/api/v1/events": ("EventList", True),
}


def self_signed(directory: str) -> tuple[str, str]:
    """A CA-less self-signed server certificate for 127.0.0.1/localhost; returns (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-standin")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    crt, kpath = os.path.join(directory, "apiserver.crt"), os.path.join(directory, "apiserver.key")
    with open(crt, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(kpath, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return crt, kpath


class StandInApiServer:
    def __init__(self, tls_dir: str | None = None, token: str | None = None) -> None:
        self.token = token
        self.rv = 100
        self.compacted = 0
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {p: {} for p in COLLECTIONS}
        self.history: dict[str, list[tuple[int, str, Obj]]] = {p: [] for p in COLLECTIONS}
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.cond = threading.Condition()
        self.generation = 0  # bumped by disconnect(): open watches end
        self.bookmarks = 0
        self.failures: list[int] = []
        self.unserved: set[str] = set()  # collections this "cluster version" does not serve (404)
        self.ca_file = ""
        handler = type("Handler", (_Handler,), {"api": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls_dir is not None:
            crt, key = self_signed(tls_dir)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(crt, key)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.ca_file, scheme = crt, "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------------
    def start(self) -> StandInApiServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="standin-apiserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.disconnect()
        self.httpd.shutdown()
        self.httpd.server_close()

    def load(self, recording: dict[str, Obj]) -> None:
        """``{collection path: a recorded List response}``; items keep their recorded versions."""
        with self.cond:
            for path, doc in recording.items():
                for item in doc.get("items") or []:
                    md = item.setdefault("metadata", {})
                    self.objects[path][(md.get("namespace", ""), md["name"])] = item
                    self.rv = max(self.rv, int(md.get("resourceVersion") or 0))

    def put(self, path: str, obj: Obj) -> int:
        with self.cond:
            self.rv += 1
            md = obj.setdefault("metadata", {})
            md["resourceVersion"] = str(self.rv)
            k = (md.get("namespace", ""), md["name"])
            kind = "MODIFIED" if k in self.objects[path] else "ADDED"
            self.objects[path][k] = obj
            self.history[path].append((self.rv, kind, obj))
            self.cond.notify_all()
            return self.rv

    def delete(self, path: str, namespace: str, name: str) -> int:
        with self.cond:
            obj = self.objects[path].pop((namespace, name))
            self.rv += 1
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)}}
            self.history[path].append((self.rv, "DELETED", obj))
            self.cond.notify_all()
            return self.rv

    def compact(self) -> None:
        """etcd compaction (and writes elsewhere moving the revision on): a watch from any version
        handed out so far now gets 410 Gone; a new LIST gives a version that can be watched."""
        with self.cond:
            self.rv += 1
            self.compacted = self.rv
            for h in self.history.values():
                h.clear()

    def disconnect(self) -> None:
        with self.cond:
            self.generation += 1
            self.cond.notify_all()

    def bookmark(self) -> None:
        with self.cond:
            self.bookmarks += 1
            self.cond.notify_all()

    def fail_next(self, n: int, status: int = 503) -> None:
        with self.cond:
            self.failures += [status] * n

    def watches(self, path: str) -> list[dict[str, list[str]]]:
        return [q for p, q in self.requests if p == path and q.get("watch") == ["true"]]


class _Handler(BaseHTTPRequestHandler):
    api: StandInApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return

    def _send(self, code: int, doc: Obj) -> None:
        body = orjson.dumps(doc)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _status(self, code: int, reason: str, message: str) -> Obj:
        return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
                "message": message}

    def do_GET(self) -> None:  # noqa: N802 - the http.server spelling
        api = self.api
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        api.requests.append((url.path, q))
        if api.token is not None and self.headers.get("Authorization") != f"Bearer {api.token}":
            self._send(401, self._status(401, "Unauthorized", "Unauthorized"))
            return
        with api.cond:
            failure = api.failures.pop(0) if api.failures else None
        if failure is not None:
            self._send(failure, self._status(failure, "ServiceUnavailable", "injected failure"))
            return
        path, ns, name = _route(url.path)
        if path is None or path in api.unserved:
            self._send(404, self._status(404, "NotFound", f"no route {url.path}"))
            return
        if name:
            with api.cond:
                obj = api.objects[path].get((ns, name))
            self._send(200, obj) if obj else self._send(404, self._status(404, "NotFound", f"{name} not found"))
            return
        if q.get("watch") == ["true"]:
            self._watch(path, ns, q)
        else:
            self._list(path, ns, q)

    def _match(self, obj: Obj, ns: str, q: dict[str, list[str]]) -> bool:
        if ns and obj.get("metadata", {}).get("namespace") != ns:
            return False
        for sel in q.get("fieldSelector", []):
            for term in sel.split(","):
                field, _, want = term.partition("=")
                if field == "spec.nodeName" and (obj.get("spec") or {}).get("nodeName") != want:
                    return False
                if field == "metadata.name" and (obj.get("metadata") or {}).get("name") != want:
                    return False
        return True

    def _list(self, path: str, ns: str, q: dict[str, list[str]]) -> None:
        api = self.api
        with api.cond:
            items = [o for _, o in sorted(api.objects[path].items()) if self._match(o, ns, q)]
            rv = api.rv
        start = int(q.get("continue", ["0"])[0] or 0)
        limit = int(q.get("limit", ["0"])[0] or 0) or len(items) or 1
        page, more = items[start:start + limit], start + limit < len(items)
        meta: Obj = {"resourceVersion": str(rv)}
        if more:
            meta["continue"] = str(start + limit)
        self._send(200, {"kind": COLLECTIONS[path][0], "apiVersion": "v1", "metadata": meta, "items": page})

    def _chunk(self, doc: Obj) -> None:
        data = orjson.dumps(doc) + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, path: str, ns: str, q: dict[str, list[str]]) -> None:
        api = self.api
        since = int(q.get("resourceVersion", ["0"])[0] or 0)
        bookmarks = q.get("allowWatchBookmarks") == ["true"]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with api.cond:
            gen, marks = api.generation, api.bookmarks
            if since and since < api.compacted:
                self._chunk({"type": "ERROR", "object": self._status(410, "Expired",
                                                                     f"too old resource version: {since}")})
                self.wfile.write(b"0\r\n\r\n")
                return
        sent = since
        try:
            while True:
                with api.cond:
                    if api.generation != gen:
                        self.close_connection = True
                        return  # cut mid-stream: no final chunk
                    new = [(rv, t, o) for rv, t, o in api.history[path] if rv > sent and self._match(o, ns, q)]
                    mark = bookmarks and api.bookmarks != marks
                    marks = api.bookmarks
                    if not new and not mark:
                        api.cond.wait(0.5)
                        continue
                    current = api.rv
                for rv, t, o in new:
                    self._chunk({"type": t, "object": o})
                    sent = rv
                if mark:
                    self._chunk({"type": "BOOKMARK", "object": {"kind": COLLECTIONS[path][0][:-4], "apiVersion": "v1",
                                                                "metadata": {"resourceVersion": str(current)}}})
                    sent = max(sent, current)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return


def _route(path: str) -> tuple[str | None, str, str]:
    """(collection, namespace, name) for a request path."""
    if path in COLLECTIONS:
        return path, "", ""
    parts = path.strip("/").split("/")
    # /api/v1/namespaces/<ns>/<res>[/<name>] or /apis/<g>/<v>/namespaces/<ns>/<res>[/<name>]
    base = 2 if parts[0] == "api" else 3
    if len(parts) >= base + 3 and parts[base] == "namespaces":
        coll = "/" + "/".join(parts[:base] + [parts[base + 2]])
        if coll in COLLECTIONS:
            return coll, parts[base + 1], parts[base + 3] if len(parts) > base + 3 else ""
    if len(parts) == base + 2:
        coll = "/" + "/".join(parts[:base + 1])
        if coll in COLLECTIONS:
            return coll, "", parts[base + 1]
    return None, "", ""
