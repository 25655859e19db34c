"""enrich: workload through the owner chain, tombstones, unknown pods, and a flaky API server."""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kubetrail import kubeapi
from kubetrail.demo.apiserver import StandInApiServer
from kubetrail.record import LogMeta, Record, SourceRef
from kubetrail.stages.enrich import Enrich, EnrichConfig

RECORDING = Path(__file__).parents[2] / "data" / "kube" / "cluster.json"
PODS = "/api/v1/pods"


def recording() -> dict[str, dict]:  # type: ignore[type-arg]
    return json.loads(RECORDING.read_text())


def line(namespace: str, pod: str, uid: str, container: str) -> Record:
    return Record(kind="container", key="k", time=0, source=SourceRef(node="node-a"), body=b"x",
                  meta=LogMeta(node="node-a", namespace=namespace, pod=pod, pod_uid=uid, container=container))


def until(cond: Callable[[], bool], secs: float = 10) -> None:
    deadline = time.monotonic() + secs
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def api() -> Iterator[StandInApiServer]:
    server = StandInApiServer()
    server.load(recording())
    server.start()
    yield server
    server.stop()


def kubeconfig(tmp_path: Path, server: StandInApiServer, token: str = "t") -> str:
    path = tmp_path / "kubeconfig"
    cluster: dict[str, str] = {"server": server.url}
    if server.ca_file:
        cluster["certificate-authority"] = server.ca_file
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "c",
                                "clusters": [{"name": "c", "cluster": cluster}],
                                "users": [{"name": "u", "user": {"token": token}}],
                                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return str(path)


def enrich(tmp_path: Path, server: StandInApiServer, **kw: object) -> Enrich:
    e = Enrich(EnrichConfig(kubeconfig=kubeconfig(tmp_path, server), **kw)).start()  # type: ignore[arg-type]
    assert e.wait_synced(10)
    return e


def test_workload_image_and_labels_through_the_owner_chain(tmp_path: Path, api: StandInApiServer) -> None:
    """Deployment via ReplicaSet, CronJob via Job, StatefulSet, DaemonSet, and a bare pod."""
    e = enrich(tmp_path, api)
    try:
        recs = e([line("shop", "web-5d8f7c9b6-abcde", "0b4d6a3e-1111-4d7c-9a4b-000000000001", "web"),
                  line("shop", "db-0", "0b4d6a3e-1111-4d7c-9a4b-000000000002", "postgres"),
                  line("ops", "report-28599000-x7k2p", "0b4d6a3e-1111-4d7c-9a4b-000000000003", "report"),
                  line("kube-system", "kube-proxy-q9z8x", "0b4d6a3e-1111-4d7c-9a4b-000000000004", "kube-proxy"),
                  line("shop", "debug", "0b4d6a3e-1111-4d7c-9a4b-000000000005", "debug")])
    finally:
        e.close()
    assert [r.log().workload for r in recs] == ["deployment/shop/web", "statefulset/shop/db", "cronjob/ops/report",
                                                "daemonset/kube-system/kube-proxy", "pod/shop/debug"]
    web = recs[0].log()
    assert web.image == "ghcr.io/acme/shop-web:1.4.2" and web.image_id.endswith("ab" * 32)
    assert web.container_id == "00" * 32 and web.labels == {"app": "web"} and web.marks == []


def test_unknown_pod_keeps_its_path_and_is_marked(tmp_path: Path, api: StandInApiServer) -> None:
    """A pod neither watched nor fetchable keeps the path's namespace/pod and is marked pod-unknown."""
    e = enrich(tmp_path, api)
    try:
        (r,) = e([line("shop", "ghost", "0b4d6a3e-1111-4d7c-9a4b-0000000000ff", "c")])
    finally:
        e.close()
    assert (r.log().namespace, r.log().pod, r.log().workload, r.log().marks) == ("shop", "ghost", "", ["pod-unknown"])


def test_a_pod_newer_than_the_watch_is_fetched(tmp_path: Path, api: StandInApiServer) -> None:
    """A line from a pod the watch has not delivered yet is enriched by one GET of that pod."""
    e = enrich(tmp_path, api)
    e.stop.set()  # no more watch events: only the lookup can know the pod
    try:
        new = copy.deepcopy(recording()[PODS]["items"][0])
        new["metadata"].update(name="web-5d8f7c9b6-new01", uid="0b4d6a3e-1111-4d7c-9a4b-000000000077")
        api.put(PODS, new)
        (r,) = e([line("shop", "web-5d8f7c9b6-new01", "0b4d6a3e-1111-4d7c-9a4b-000000000077", "web")])
    finally:
        e.close()
    assert r.log().workload == "deployment/shop/web" and r.log().marks == []


def test_deleted_pod_is_a_tombstone_until_it_expires(tmp_path: Path, api: StandInApiServer) -> None:
    """Late lines of a deleted pod still enrich (marked tombstone); after tombstone_secs they are unknown."""
    e = enrich(tmp_path, api, tombstone_secs=0.5, lookup_negative_secs=0)
    uid = "0b4d6a3e-1111-4d7c-9a4b-000000000002"
    try:
        api.delete(PODS, "shop", "db-0")
        until(lambda: (p := e.cache.get(uid)) is not None and p.deleted_ns > 0)
        (r,) = e([line("shop", "db-0", uid, "postgres")])
        assert r.log().workload == "statefulset/shop/db" and r.log().marks == ["tombstone"]
        time.sleep(0.6)
        api.put(PODS, copy.deepcopy(recording()[PODS]["items"][4]))  # any event runs the expiry
        until(lambda: e.cache.get(uid) is None)
        (r,) = e([line("shop", "db-0", uid, "postgres")])
        assert r.log().marks == ["pod-unknown"]
    finally:
        e.close()


def test_survives_disconnects_410_gone_and_bookmarks(tmp_path: Path, api: StandInApiServer) -> None:
    """The cache catches up after a cut watch, relists after 410 Gone, and follows bookmarks."""
    e = enrich(tmp_path, api)
    pods = e.watchers[0]
    try:
        def add(name: str, uid: str) -> None:
            p = copy.deepcopy(recording()[PODS]["items"][0])
            p["metadata"].update(name=name, uid=uid)
            api.put(PODS, p)

        add("web-5d8f7c9b6-aaaa1", "u-1")
        until(lambda: e.cache.get("u-1") is not None)
        api.bookmark()
        until(lambda: pods.counts["bookmarks"] >= 1)
        assert pods.version == str(api.rv)
        api.fail_next(2)  # the server is down for two requests after the cut
        api.disconnect()
        add("web-5d8f7c9b6-aaaa2", "u-2")
        until(lambda: e.cache.get("u-2") is not None)  # resumed from its version: no relist needed
        assert pods.counts["lists"] == 1
        api.disconnect()
        api.compact()  # the version the watcher holds is gone now
        add("web-5d8f7c9b6-aaaa3", "u-3")
        until(lambda: e.cache.get("u-3") is not None)
        assert pods.counts["gone"] >= 1 and pods.counts["lists"] >= 2
        (r,) = e([line("shop", "web-5d8f7c9b6-aaaa3", "u-3", "web")])
        assert r.log().workload == "deployment/shop/web"
    finally:
        e.close()


def test_in_cluster_https_with_a_rotated_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Service-account auth over HTTPS; when the token file rotates, the 401 makes the client re-read it."""
    server = StandInApiServer(tls_dir=str(tmp_path), token="token-1")
    server.load(recording())
    server.start()
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("token-1")
    (sa / "namespace").write_text("kubetrail")
    os.link(server.ca_file, sa / "ca.crt")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", server.url.rsplit(":", 1)[1])
    e = Enrich(EnrichConfig(in_cluster=True, service_account_dir=str(sa), node="node-a")).start()
    try:
        assert e.wait_synced(10)
        assert e.cache.get("0b4d6a3e-1111-4d7c-9a4b-000000000006") is None  # node-b's pod: not watched
        (sa / "token").write_text("token-2")
        server.token = "token-2"
        server.disconnect()
        p = copy.deepcopy(recording()[PODS]["items"][0])
        p["metadata"].update(name="web-5d8f7c9b6-rot01", uid="u-rot")
        server.put(PODS, p)
        until(lambda: e.cache.get("u-rot") is not None)
    finally:
        e.close()
        server.stop()


def test_not_in_a_pod_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """in_cluster outside a pod says so in one line."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    (tmp_path / "token").write_text("t")
    (tmp_path / "namespace").write_text("n")
    with pytest.raises(kubeapi.ConfigError, match="not inside a pod"):
        kubeapi.connect(in_cluster=True, service_account_dir=str(tmp_path))


NODES, NAMESPACES = "/api/v1/nodes", "/api/v1/namespaces"
WEB = ("shop", "web-5d8f7c9b6-abcde", "0b4d6a3e-1111-4d7c-9a4b-000000000001", "web")


def test_node_and_namespace_labels_ride_on_each_line(tmp_path: Path, api: StandInApiServer) -> None:
    """The line's node gives its failure domain, the pod's namespace its Pod Security level; a label
    changed later reaches the lines after it; the agent of node-a watches only its own Node."""
    e = enrich(tmp_path, api, node="node-a")
    try:
        (web,) = e([line(*WEB)])
        (proxy,) = e([line("kube-system", "kube-proxy-q9z8x", "0b4d6a3e-1111-4d7c-9a4b-000000000004", "kube-proxy")])
        assert web.log().node_labels == {"topology.kubernetes.io/region": "eu-west-1",
                                         "topology.kubernetes.io/zone": "eu-west-1a",
                                         "node.kubernetes.io/instance-type": "m5.large"}
        assert web.log().namespace_labels == {"pod-security.kubernetes.io/enforce": "restricted"}
        assert proxy.log().namespace_labels == {}  # kube-system carries no Pod Security label
        assert e.cache.labels["Node"].keys() == {"node-a"}  # node-b was not listed to this agent
        assert all(q.get("fieldSelector") == ["metadata.name=node-a"] for q in api.watches(NODES))
        shop = copy.deepcopy(recording()[NAMESPACES]["items"][2])
        shop["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "privileged"
        api.put(NAMESPACES, shop)
        until(lambda: e([line(*WEB)])[0].log().namespace_labels == {"pod-security.kubernetes.io/enforce": "privileged"})
    finally:
        e.close()


def test_label_lists_select_what_is_copied_and_empty_lists_watch_nothing(tmp_path: Path,
                                                                        api: StandInApiServer) -> None:
    e = enrich(tmp_path, api, node_labels=["topology.kubernetes.io/zone"], namespace_labels=["team"])
    try:
        (web,) = e([line(*WEB)])
    finally:
        e.close()
    assert web.log().node_labels == {"topology.kubernetes.io/zone": "eu-west-1a"}
    assert web.log().namespace_labels == {"team": "payments"}
    before = len(api.requests)
    e = enrich(tmp_path, api, node_labels=[], namespace_labels=[])
    try:
        (web,) = e([line(*WEB)])
    finally:
        e.close()
    assert (web.log().node_labels, web.log().namespace_labels) == ({}, {})
    assert not [p for p, _ in api.requests[before:] if p in (NODES, NAMESPACES)]
