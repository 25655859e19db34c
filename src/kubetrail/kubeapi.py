"""List+watch against the Kubernetes API (for the ``enrich`` stage and the ``k8s_events`` source).

Connection and credentials come from lightkube (a maintained client): kubeconfig files outside the
cluster, the pod's service account inside it, whose token file lightkube re-reads when the API
server answers 401 (the kubelet rotates projected tokens). The list+watch loop is ours because it
needs what lightkube's ``watch`` does not expose: ``allowWatchBookmarks`` and the resourceVersion a
bookmark carries, so a consumer can checkpoint it.

The loop (client-go's reflector, in short):

1. LIST (pages of ``limit``) → ``on_list(items, resourceVersion)``, unless resuming from a version;
2. WATCH from that version with bookmarks → ``on_event(type, object)`` / ``on_bookmark(version)``;
3. a dropped connection or a server timeout → WATCH again from the last version seen;
4. ``410 Gone`` (as an HTTP status or an ``ERROR`` event) → the version is compacted away: LIST again.

Errors back off exponentially (0.5 s → 30 s) and never end the loop; ``stop`` does.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from kubetrail.errors import ConfigError

if TYPE_CHECKING:
    import httpx2 as httpx

# httpx and lightkube (~0.1 s of CPU to import) are imported where a connection is made: every
# command imports this module through the config's source types, few of them talk to a cluster.

log = logging.getLogger("kubetrail.kubeapi")
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
Obj = dict[str, Any]


class Gone(Exception):
    """The resourceVersion we asked for has been compacted away (HTTP 410): relist."""


def connect(kubeconfig: str = "", in_cluster: bool = False, service_account_dir: str = SERVICE_ACCOUNT_DIR,
            context: str = "") -> httpx.Client:
    """An authenticated HTTP client for the API server (no request is made here)."""
    import httpx2 as httpx
    from lightkube.config.client_adapter import Client as _httpx_client
    from lightkube.config.client_adapter import ConnectionParams
    from lightkube.config.kubeconfig import KubeConfig

    try:
        if in_cluster:
            cfg = KubeConfig.from_service_account(service_account_dir)
        elif kubeconfig:
            cfg = KubeConfig.from_file(kubeconfig)
        else:
            cfg = KubeConfig.from_env()
        single = cfg.get(context_name=context or None)
    except KeyError as exc:  # from_service_account without KUBERNETES_SERVICE_HOST/PORT
        raise ConfigError("enrich.in_cluster", f"not inside a pod: {exc} is not set") from exc
    except Exception as exc:  # lightkube's ConfigError and file errors: one line for the operator
        raise ConfigError("enrich", f"cannot load the Kubernetes client config: {exc}") from exc
    timeout = httpx.Timeout(10.0, read=120.0)
    return _httpx_client(single, ConnectionParams(timeout=timeout, trust_env=False))


def api_get(http: httpx.Client, path: str, params: dict[str, str] | None = None) -> Obj | None:
    """GET one object; None when it does not exist (404)."""
    resp = http.get(path, params=params or {})
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    doc: Obj = orjson.loads(resp.content)
    return doc


def list_all(http: httpx.Client, path: str, params: dict[str, str], page: int = 500) -> tuple[list[Obj], str]:
    items: list[Obj] = []
    cont = ""
    while True:
        q = {**params, "limit": str(page)}
        if cont:
            q["continue"] = cont
        resp = http.get(path, params=q)
        if resp.status_code == 410:
            raise Gone(path)
        resp.raise_for_status()
        doc = orjson.loads(resp.content)
        items += doc.get("items") or []
        meta = doc.get("metadata") or {}
        cont = meta.get("continue") or ""
        if not cont:
            return items, str(meta.get("resourceVersion") or "")


class Watcher:
    """One resource collection kept in sync: LIST, then WATCH with bookmarks, forever."""

    def __init__(self, http: httpx.Client, path: str, *, params: dict[str, str] | None = None,
                 on_list: Callable[[list[Obj], str], None], on_event: Callable[[str, Obj], None],
                 on_bookmark: Callable[[str], None] | None = None, resource_version: str = "",
                 timeout_secs: int = 300) -> None:
        self.http, self.path, self.params = http, path, dict(params or {})
        self.on_list, self.on_event, self.on_bookmark = on_list, on_event, on_bookmark
        self.version = resource_version
        self.timeout_secs = timeout_secs
        self.synced = threading.Event()
        self.counts = {"lists": 0, "watches": 0, "gone": 0, "errors": 0, "bookmarks": 0}

    def run(self, stop: threading.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                if not self.version:
                    items, self.version = list_all(self.http, self.path, self.params)
                    self.counts["lists"] += 1
                    self.on_list(items, self.version)
                self.synced.set()
                self._watch(stop)
                delay = 0.5
            except Gone:
                self.counts["gone"] += 1
                log.info("%s: resourceVersion %s is gone; listing again", self.path, self.version)
                self.version = ""
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any failure; stop ends it
                if stop.is_set():
                    return
                self.counts["errors"] += 1
                log.info("%s: %s; retrying in %.1fs", self.path, exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _watch(self, stop: threading.Event) -> None:
        q = {**self.params, "watch": "true", "allowWatchBookmarks": "true", "resourceVersion": self.version,
             "timeoutSeconds": str(self.timeout_secs)}
        self.counts["watches"] += 1
        with self.http.stream("GET", self.path, params=q) as resp:
            if resp.status_code == 410:
                raise Gone(self.path)
            if resp.status_code >= 400:
                resp.read()
            resp.raise_for_status()
            for line in resp.iter_lines():
                if stop.is_set():
                    return
                if not line.strip():
                    continue
                ev = orjson.loads(line)
                kind, obj = ev.get("type"), ev.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(self.path)
                    import httpx2

                    raise httpx2.HTTPError(f"watch error: {obj.get('message', '')[:200]}")
                rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                if kind == "BOOKMARK":
                    self.counts["bookmarks"] += 1
                    self.version = rv or self.version
                    if self.on_bookmark:
                        self.on_bookmark(self.version)
                    continue
                self.on_event(str(kind), obj)
                self.version = rv or self.version


def start(watcher: Watcher, stop: threading.Event, name: str) -> threading.Thread:
    t = threading.Thread(target=watcher.run, args=(stop,), name=name, daemon=True)
    t.start()
    return t


def env_has_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
