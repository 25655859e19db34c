"""k8s_events: list then watch, resume from the stored resourceVersion, 410 Gone relist, bookmarks, core/v1."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kubetrail import kubeapi
from kubetrail.demo.apiserver import StandInApiServer
from kubetrail.record import Record
from kubetrail.sources.k8s_events import (
    EVENTS_CORE,
    EVENTS_V1,
    K8sEventsConfig,
    K8sEventsSource,
    event_message,
)

RECORDING = Path(__file__).parents[2] / "data" / "kube" / "cluster.json"


def until(cond: Callable[[], bool], secs: float = 10) -> None:
    deadline = time.monotonic() + secs
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class Run:
    """The source in a thread, committing into a dict by key (as the store refuses duplicates)."""

    def __init__(self, server: StandInApiServer, positions: dict[str, str], **kw: object) -> None:
        self.records: dict[str, Record] = {}
        self.positions = positions
        self.stop = threading.Event()
        http = kubeapi.connect(kubeconfig=_kubeconfig(server, positions))
        self.src = K8sEventsSource(K8sEventsConfig(**kw), http=http)  # type: ignore[arg-type]
        self.t = threading.Thread(target=self.src.run, args=(self.commit, positions.get, self.stop))
        self.t.start()

    def commit(self, records: list[Record], positions: dict[str, str]) -> None:
        for r in records:
            self.records.setdefault(r.key, r)
        self.positions.update(positions)

    def close(self, server: StandInApiServer) -> None:
        self.stop.set()
        server.disconnect()
        self.t.join(5)
        assert self.src.http is not None
        self.src.http.close()


def _kubeconfig(server: StandInApiServer, scratch: dict[str, str]) -> str:
    path = Path(scratch.setdefault("_dir", "")) / "kubeconfig"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "c",
                                "clusters": [{"name": "c", "cluster": {"server": server.url}}],
                                "users": [{"name": "u", "user": {"token": "t"}}],
                                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return str(path)


def new_event(server: StandInApiServer, path: str, uid: str, note: str) -> None:
    ev = copy.deepcopy(json.loads(RECORDING.read_text())[EVENTS_V1]["items"][0])
    ev["metadata"].update(name=f"e-{uid}", uid=uid)
    ev["note"], ev["reason"] = note, "Started"
    server.put(path, ev)


def test_list_watch_bookmark_restart_and_410_relist(tmp_path: Path) -> None:
    """Every event once across a restart from the stored version, a compaction (410) and bookmarks."""
    server = StandInApiServer()
    server.load(json.loads(RECORDING.read_text()))
    server.start()
    positions = {"_dir": str(tmp_path)}
    try:
        run = Run(server, positions)
        until(lambda: len(run.records) == 2)
        new_event(server, EVENTS_V1, "u-1", "Started container web token=s3cr3t")
        until(lambda: len(run.records) == 3)
        server.bookmark()
        until(lambda: positions.get("k8s_events:*") == str(server.rv))
        run.close(server)
        first = dict(run.records)

        new_event(server, EVENTS_V1, "u-2", "while we were away")
        run = Run(server, positions)  # resumes from the stored version: no LIST
        until(lambda: len(run.records) == 1)
        assert run.src.watcher is not None and run.src.watcher.counts["lists"] == 0
        server.compact()
        server.disconnect()
        new_event(server, EVENTS_V1, "u-3", "after compaction")
        until(lambda: any(r.event().get("note") == "after compaction" for r in run.records.values()))
        assert run.src.watcher.counts["gone"] >= 1 and run.src.watcher.counts["lists"] == 1
        run.close(server)
        relisted = set(run.records) - {k for k, r in run.records.items() if r.event()["metadata"]["uid"] in ("u-2", "u-3")}
        assert relisted <= set(first), "a relist must give the events already stored the same keys"
    finally:
        server.stop()
    notes = sorted(event_message(r.event()) for r in list(first.values()))
    assert "Started: Started container web token=[redacted]" in notes
    r = next(r for r in first.values() if r.event()["reason"] == "Scheduled")
    assert (r.kind, r.log().namespace, r.log().pod, r.log().unit, r.log().stream) == \
        ("k8s_event", "shop", "web-5d8f7c9b6-abcde", "kubelet", "Normal")
    assert r.time == 1714557481_000_000_000


def test_core_v1_fallback(tmp_path: Path) -> None:
    """A cluster without events.k8s.io/v1 is read through core v1 Events."""
    server = StandInApiServer()
    server.unserved.add(EVENTS_V1)
    server.start()
    positions = {"_dir": str(tmp_path)}
    try:
        run = Run(server, positions)
        server.put(EVENTS_CORE, {"metadata": {"name": "x.1", "namespace": "shop", "uid": "core-1"},
                                 "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-1"},
                                 "reason": "BackOff", "message": "Back-off restarting failed container",
                                 "type": "Warning", "source": {"component": "kubelet", "host": "node-b"},
                                 "lastTimestamp": "2024-05-01T10:00:00Z"})
        until(lambda: len(run.records) == 1)
        run.close(server)
    finally:
        server.stop()
    (r,) = run.records.values()
    assert (event_message(r.event()), r.log().node, r.log().stream) == \
        ("BackOff: Back-off restarting failed container", "node-b", "Warning")
