"""Add what only the API server knows to container log lines: workload, image, labels.

A metadata cache fed by list+watch (``kubeapi.Watcher``) of Pods (only this node's, with
``node``), ReplicaSets and Jobs, and of Nodes and Namespaces for their labels. Every container line is looked up by **pod UID** (names are reused:
a StatefulSet's ``web-0`` on another node is another pod) and gets

* ``workload``: the owner chain resolved to ``deployment/<ns>/<name>`` (Pod → ReplicaSet → Deployment),
  ``cronjob/…`` (Pod → Job → CronJob), ``statefulset/…``, ``daemonset/…``, ``job/…``, ``replicaset/…``
  or ``pod/<ns>/<name>`` for a bare pod. It is the same on every node, so one query follows an
  application across nodes and reschedules. When a ReplicaSet is not (yet) known, a ReplicaSet named
  ``<deployment>-<pod-template-hash>`` gives the Deployment and the line is marked ``workload-guessed``;
* ``image``, ``image_id`` and ``container_id`` from the pod's container statuses, and the
  ``labels`` the config selects;
* ``node_labels`` and ``namespace_labels``: the labels ``node_labels``/``namespace_labels`` select
  from the line's Node (zone, instance type: which failure domain) and its pod's Namespace (the Pod
  Security level it runs under). Nodes and Namespaces are only watched when a list is not empty;
  a deleted one keeps its labels (lines arrive late).

Deleted pods stay as **tombstones** for ``tombstone_secs`` (late lines still enrich, marked
``tombstone``). A pod the cache has never seen is fetched once by namespace/name from the path (it
may be newer than the watch); if the API server does not know it either, the line keeps what the path
says and is marked ``pod-unknown``. With no API server configured, lines are marked ``unenriched``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import msgspec

from kubetrail import kubeapi
from kubetrail.record import LogMeta, Record

log = logging.getLogger("kubetrail.stages.enrich")
Obj = dict[str, Any]
DEFAULT_LABELS = ("app", "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
                  "app.kubernetes.io/version", "k8s-app")
DEFAULT_NODE_LABELS = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone", "node.kubernetes.io/instance-type")
DEFAULT_NAMESPACE_LABELS = ("pod-security.kubernetes.io/enforce",)


class EnrichConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``enrich:`` in the config file. Without this section the agent needs no API server."""

    kubeconfig: str = ""
    in_cluster: bool = False
    service_account_dir: str = kubeapi.SERVICE_ACCOUNT_DIR
    context: str = ""
    node: str = ""  # only pods on this node are watched (all pods when empty)
    tombstone_secs: float = 600.0
    labels: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_LABELS))
    node_labels: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_NODE_LABELS))
    namespace_labels: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_NAMESPACE_LABELS))
    sync_timeout_secs: float = 10.0
    lookup_negative_secs: float = 30.0

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.in_cluster and self.kubeconfig:
            out.append(("in_cluster", "give kubeconfig or in_cluster, not both"))
        if self.tombstone_secs < 0:
            out.append(("tombstone_secs", "must be 0 or more"))
        return out


class PodInfo(msgspec.Struct, kw_only=True):
    namespace: str
    name: str
    uid: str
    node: str = ""
    labels: dict[str, str] = {}
    owner: tuple[str, str] | None = None  # (kind, name) of the controller
    containers: dict[str, tuple[str, str, str]] = {}  # name -> (image, imageID, containerID)
    deleted_ns: int = 0


def pod_info(obj: Obj) -> PodInfo:
    md = obj.get("metadata") or {}
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    owner = next(((o.get("kind", ""), o.get("name", "")) for o in md.get("ownerReferences") or []
                  if o.get("controller")), None)
    containers: dict[str, tuple[str, str, str]] = {}
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []) + \
            (spec.get("ephemeralContainers") or []):
        containers[c.get("name", "")] = (c.get("image", ""), "", "")
    for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []) + \
            (status.get("ephemeralContainerStatuses") or []):
        cid = str(s.get("containerID") or "")
        containers[s.get("name", "")] = (s.get("image") or containers.get(s.get("name", ""), ("", "", ""))[0],
                                         s.get("imageID", ""), cid.split("://", 1)[-1])
    return PodInfo(namespace=md.get("namespace", ""), name=md.get("name", ""), uid=md.get("uid", ""),
                   node=spec.get("nodeName", ""), labels=dict(md.get("labels") or {}), owner=owner,
                   containers=containers)


def _owner(obj: Obj) -> tuple[str, str] | None:
    return next(((o.get("kind", ""), o.get("name", "")) for o in (obj.get("metadata") or {}).get("ownerReferences")
                 or [] if o.get("controller")), None)


class MetadataCache:
    """Pods by UID (with tombstones), and owners of ReplicaSets and Jobs by (namespace, name)."""

    def __init__(self, tombstone_secs: float) -> None:
        self.lock = threading.Lock()
        self.pods: dict[str, PodInfo] = {}
        self.owners: dict[str, dict[tuple[str, str], tuple[str, str] | None]] = {"ReplicaSet": {}, "Job": {}}
        self.labels: dict[str, dict[str, dict[str, str]]] = {"Node": {}, "Namespace": {}}  # kind -> name -> labels
        self.tombstone_ns = int(tombstone_secs * 1e9)

    def pods_listed(self, items: list[Obj], _rv: str) -> None:
        now = time.time_ns()
        with self.lock:
            live = {}
            for obj in items:
                p = pod_info(obj)
                live[p.uid] = p
            for uid, old in self.pods.items():  # gone while we were not watching: tombstone
                if uid not in live:
                    old.deleted_ns = old.deleted_ns or now
                    live[uid] = old
            self.pods = live

    def pod_event(self, kind: str, obj: Obj) -> None:
        p = pod_info(obj)
        with self.lock:
            if kind == "DELETED":
                p.deleted_ns = time.time_ns()
            self.pods[p.uid] = p
            self._expire()

    def owners_listed(self, kind: str, items: list[Obj]) -> None:
        with self.lock:
            self.owners[kind] = {((o.get("metadata") or {}).get("namespace", ""), o["metadata"]["name"]): _owner(o)
                                 for o in items}

    def owner_event(self, kind: str, event: str, obj: Obj) -> None:
        md = obj.get("metadata") or {}
        with self.lock:
            # A deleted ReplicaSet's pods may still log: keep its owner (it is tiny).
            self.owners[kind][(md.get("namespace", ""), md.get("name", ""))] = _owner(obj)

    def labels_listed(self, kind: str, items: list[Obj]) -> None:
        """A relist adds and updates; it keeps what vanished (a late line of a removed node still
        names its zone; both lists are small)."""
        with self.lock:
            for o in items:
                md = o.get("metadata") or {}
                self.labels[kind][md.get("name", "")] = dict(md.get("labels") or {})

    def labels_event(self, kind: str, _event: str, obj: Obj) -> None:
        md = obj.get("metadata") or {}
        with self.lock:
            self.labels[kind][md.get("name", "")] = dict(md.get("labels") or {})

    def labels_of(self, kind: str, name: str, keys: list[str]) -> dict[str, str]:
        with self.lock:
            have = self.labels[kind].get(name) or {}
            return {k: have[k] for k in keys if k in have}

    def _expire(self) -> None:
        cutoff = time.time_ns() - self.tombstone_ns
        dead = [u for u, p in self.pods.items() if p.deleted_ns and p.deleted_ns < cutoff]
        for u in dead:
            del self.pods[u]

    def get(self, uid: str) -> PodInfo | None:
        with self.lock:
            return self.pods.get(uid)

    def workload(self, pod: PodInfo) -> tuple[str, bool]:
        """(kind/namespace/name, guessed)."""
        ns = pod.namespace
        if pod.owner is None:
            return f"pod/{ns}/{pod.name}", False
        kind, name = pod.owner
        with self.lock:
            if kind in ("ReplicaSet", "Job"):
                known = (ns, name) in self.owners[kind]
                up = self.owners[kind].get((ns, name))
                if up is not None:
                    return f"{up[0].lower()}/{ns}/{up[1]}", False
                if not known and kind == "ReplicaSet":
                    h = pod.labels.get("pod-template-hash", "")
                    if h and name.endswith("-" + h):
                        return f"deployment/{ns}/{name[: -len(h) - 1]}", True
        return f"{kind.lower()}/{ns}/{name}", False


class Enrich:
    """The stage: ``__call__(records) -> records``, container lines enriched in place."""

    def __init__(self, config: EnrichConfig, http: Any = None) -> None:
        self.config = config
        self.cache = MetadataCache(config.tombstone_secs)
        self.http = http if http is not None else kubeapi.connect(config.kubeconfig, config.in_cluster,
                                                                   config.service_account_dir, config.context)
        self.stop = threading.Event()
        self.negative: dict[str, float] = {}
        params = {"fieldSelector": f"spec.nodeName={config.node}"} if config.node else {}
        c = self.cache
        self.watchers = [
            kubeapi.Watcher(self.http, "/api/v1/pods", params=params, on_list=c.pods_listed, on_event=c.pod_event),
            kubeapi.Watcher(self.http, "/apis/apps/v1/replicasets", on_list=lambda i, _: c.owners_listed(
                "ReplicaSet", i), on_event=lambda e, o: c.owner_event("ReplicaSet", e, o)),
            kubeapi.Watcher(self.http, "/apis/batch/v1/jobs", on_list=lambda i, _: c.owners_listed("Job", i),
                            on_event=lambda e, o: c.owner_event("Job", e, o)),
        ]
        if config.node_labels:
            only = {"fieldSelector": f"metadata.name={config.node}"} if config.node else {}
            self.watchers.append(kubeapi.Watcher(
                self.http, "/api/v1/nodes", params=only, on_list=lambda i, _: c.labels_listed("Node", i),
                on_event=lambda e, o: c.labels_event("Node", e, o)))
        if config.namespace_labels:
            self.watchers.append(kubeapi.Watcher(
                self.http, "/api/v1/namespaces", on_list=lambda i, _: c.labels_listed("Namespace", i),
                on_event=lambda e, o: c.labels_event("Namespace", e, o)))
        self.threads: list[threading.Thread] = []

    def start(self) -> Enrich:
        self.threads = [kubeapi.start(w, self.stop, f"enrich-{w.path.rsplit('/', 1)[-1]}") for w in self.watchers]
        return self

    def wait_synced(self, timeout: float | None = None) -> bool:
        deadline = time.monotonic() + (self.config.sync_timeout_secs if timeout is None else timeout)
        return all(w.synced.wait(max(0.0, deadline - time.monotonic())) for w in self.watchers)

    def close(self) -> None:
        """Stop watching. A watch blocked on a quiet stream ends when it next hears from the server
        (its thread is a daemon), so this does not wait for it."""
        self.stop.set()
        deadline = time.monotonic() + 1.0
        for t in self.threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        self.http.close()

    def __call__(self, records: list[Record]) -> list[Record]:
        if any(r.kind == "container" for r in records):
            self.wait_synced()
        for r in records:
            if r.kind == "container" and isinstance(r.meta, LogMeta):
                self.enrich(r.meta)
            elif r.kind == "k8s_event" and isinstance(r.meta, LogMeta) and r.meta.pod_uid and not r.meta.workload:
                pod = self.cache.get(r.meta.pod_uid)  # an event about a pod: name its workload too
                if pod is not None:
                    r.meta.workload = self.cache.workload(pod)[0]
        return records

    def enrich(self, m: LogMeta) -> None:
        pod = self.cache.get(m.pod_uid) if m.pod_uid else None
        if pod is None and m.pod_uid:
            pod = self._lookup(m)
        if pod is None:
            m.marks = [*m.marks, "pod-unknown"]
            return
        m.namespace, m.pod = pod.namespace, pod.name
        m.node = m.node or pod.node
        m.workload, guessed = self.cache.workload(pod)
        image, image_id, cid = pod.containers.get(m.container, ("", "", ""))
        m.image, m.image_id, m.container_id = image, image_id, m.container_id or cid
        m.labels = {k: pod.labels[k] for k in self.config.labels if k in pod.labels}
        if self.config.node_labels and m.node:
            m.node_labels = self.cache.labels_of("Node", m.node, self.config.node_labels)
        if self.config.namespace_labels:
            m.namespace_labels = self.cache.labels_of("Namespace", m.namespace, self.config.namespace_labels)
        marks = list(m.marks)
        if guessed:
            marks.append("workload-guessed")
        if pod.deleted_ns:
            marks.append("tombstone")
        m.marks = marks

    def _lookup(self, m: LogMeta) -> PodInfo | None:
        """One GET for a pod the watch has not delivered (yet); misses are remembered for a while."""
        now = time.monotonic()
        if self.negative.get(m.pod_uid, 0.0) > now:
            return None
        try:
            obj = kubeapi.api_get(self.http, f"/api/v1/namespaces/{m.namespace}/pods/{m.pod}")
        except Exception as exc:  # noqa: BLE001 - the line is stored either way, marked
            log.info("lookup of pod %s/%s failed: %s", m.namespace, m.pod, exc)
            obj = None
        if obj is not None and (obj.get("metadata") or {}).get("uid") == m.pod_uid:
            self.cache.pod_event("ADDED", obj)
            return self.cache.get(m.pod_uid)
        self.negative[m.pod_uid] = now + self.config.lookup_negative_secs
        return None


def mark_unenriched(records: list[Record]) -> list[Record]:
    """The stage without an API server: container lines say that only their path was known."""
    for r in records:
        if r.kind == "container" and isinstance(r.meta, LogMeta) and "unenriched" not in r.meta.marks:
            r.meta.marks = [*r.meta.marks, "unenriched"]
    return records
