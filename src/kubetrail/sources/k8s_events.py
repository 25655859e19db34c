"""Kubernetes Events (``events.k8s.io/v1``, falling back to core ``v1``), kept after etcd drops them.

Events live one hour in etcd (``--event-ttl``); this source keeps every version of every Event. It is
a ``kubeapi.Watcher``: LIST then WATCH with bookmarks; the resourceVersion of what was committed
(an event or a bookmark) is the position, so a restart resumes the watch where the store is; when
that version has been compacted (410 Gone) it lists again, and what it had already is refused by key.

An Event's key covers its content without ``resourceVersion``/``managedFields``: the same version
read from a LIST and a WATCH is one record, a ``series.count`` update is a new one. Run this source in
one place (one agent or ``run``), not on every node: each instance reads the whole cluster's events.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Literal

import msgspec
import orjson

from kubetrail import kubeapi
from kubetrail.record import LogMeta, Record, Redaction, SourceRef
from kubetrail.sources._logkey import log_key
from kubetrail.stages.extract import parse_time_ns
from kubetrail.stages.redact_lines import RedactLines

log = logging.getLogger("kubetrail.sources.k8s_events")
RecordsCommit = Callable[[list[Record], dict[str, str]], object]
EVENTS_V1 = "/apis/events.k8s.io/v1/events"
EVENTS_CORE = "/api/v1/events"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet")


class K8sEventsConfig(msgspec.Struct, tag="k8s_events", tag_field="type", frozen=True, kw_only=True,
                      forbid_unknown_fields=True):
    """Connection keys as in ``enrich``; when none is set, the ``enrich`` section's are used."""

    kubeconfig: str = ""
    in_cluster: bool = False
    service_account_dir: str = kubeapi.SERVICE_ACCOUNT_DIR
    context: str = ""
    namespace: str = ""
    api: Literal["auto", "events.k8s.io/v1", "v1"] = "auto"
    node: str = ""


class K8sEventsSource:
    def __init__(self, config: K8sEventsConfig, cluster: str = "", redact: RedactLines | None = None,
                 http: Any = None) -> None:
        self.config = config
        self.cluster = cluster
        self.redact = redact or RedactLines()
        self.http = http
        self.position_key = f"k8s_events:{config.namespace or '*'}"
        self.source = SourceRef(cluster=cluster, node=config.node, stream="k8s-events")
        self.watcher: kubeapi.Watcher | None = None

    def _path(self) -> str:
        api = self.config.api
        if api == "auto":
            assert self.http is not None
            resp = self.http.get(EVENTS_V1, params={"limit": "1"})
            api = "v1" if resp.status_code == 404 else "events.k8s.io/v1"
            if api == "v1":
                log.info("events.k8s.io/v1 not served; reading core v1 Events")
        path = EVENTS_V1 if api == "events.k8s.io/v1" else EVENTS_CORE
        if self.config.namespace:
            base, res = path.rsplit("/", 1)
            path = f"{base}/namespaces/{self.config.namespace}/{res}"
        return path

    def run(self, commit: RecordsCommit, load_position: Callable[[str], str | None], stop: threading.Event) -> None:
        c = self.config
        if self.http is None:
            self.http = kubeapi.connect(c.kubeconfig, c.in_cluster, c.service_account_dir, c.context)
        saved = load_position(self.position_key) or ""

        def listed(items: list[dict[str, Any]], rv: str) -> None:
            commit([r for r in (self.to_record(o) for o in items) if r is not None], {self.position_key: rv})

        def event(kind: str, obj: dict[str, Any]) -> None:
            rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            rec = self.to_record(obj) if kind in ("ADDED", "MODIFIED") else None
            commit([rec] if rec is not None else [], {self.position_key: rv} if rv else {})

        def bookmark(rv: str) -> None:
            commit([], {self.position_key: rv})

        self.watcher = kubeapi.Watcher(self.http, self._path(), on_list=listed, on_event=event,
                                       on_bookmark=bookmark, resource_version=saved)
        self.watcher.run(stop)

    def to_record(self, obj: dict[str, Any]) -> Record | None:
        md = obj.get("metadata") or {}
        uid = str(md.get("uid") or "")
        if not uid:
            return None
        ev = {**obj, "metadata": {k: v for k, v in md.items() if k not in ("resourceVersion", "managedFields")}}
        found: list[Redaction] = []
        for field in ("note", "message"):
            if isinstance(ev.get(field), str):
                ev[field], more = self.redact(ev[field], field)
                found += more
        body = orjson.dumps(ev, option=orjson.OPT_SORT_KEYS)
        regarding = ev.get("regarding") or ev.get("involvedObject") or {}
        series = ev.get("series") or {}
        when = next((t for t in (parse_time_ns(series.get("lastObservedTime")), parse_time_ns(ev.get("eventTime")),
                                 parse_time_ns(ev.get("lastTimestamp")),
                                 parse_time_ns(ev.get("deprecatedLastTimestamp")),
                                 parse_time_ns(md.get("creationTimestamp"))) if t is not None), 0)
        kind = str(regarding.get("kind") or "")
        ns = str(regarding.get("namespace") or md.get("namespace") or "")
        name = str(regarding.get("name") or "")
        source = ev.get("source") or {}
        meta = LogMeta(node=str(ev.get("reportingInstance") or source.get("host") or ""), namespace=ns,
                       pod=name if kind == "Pod" else "", pod_uid=str(regarding.get("uid") or "") if kind == "Pod" else "",
                       workload=f"{kind.lower()}/{ns}/{name}" if kind in WORKLOAD_KINDS else "",
                       unit=str(ev.get("reportingController") or source.get("component") or ""),
                       stream=str(ev.get("type") or ""))
        return Record(kind="k8s_event", key=log_key("k8s_event", f"k8s_event:{uid}", 0, "", None, body), time=when,
                      source=self.source, body=body, meta=meta, format="k8s_event", redactions=found)


def event_message(ev: dict[str, Any]) -> str:
    """``<reason>: <note>`` as ``kubectl events`` shows an Event."""
    note = ev.get("note") if "note" in ev else ev.get("message")
    return f"{ev.get('reason') or ''}: {note or ''}".strip(": ")
