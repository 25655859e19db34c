"""Detectors for catalog rows D23 (new image), D27 (static pods), D58 (secret-read baseline),
D62 (token for a privileged SA) and D71 (pod-bound token used away from its pod): alerting and
quiet cases, and state that survives a restart."""

from __future__ import annotations

from typing import Any

from kubetrail.alerts.config import StatefulConfig
from kubetrail.detect.stateful.images import MirrorPod, NewImage, repository
from kubetrail.detect.stateful.pod_ips import PodTokenElsewhere, is_public
from kubetrail.detect.stateful.privileged_sa import PrivilegedTokenRequest
from kubetrail.detect.stateful.secrets import SecretReadBaseline
from kubetrail.detect.stateful.state import StateStore
from kubetrail.store.sqlite import Store

CFG = StatefulConfig(learning_secs=60)


def pod(*images: str, init: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)],
                     "initContainers": [{"name": "i", "image": im} for im in init]}}


def deployment(*images: str) -> dict[str, Any]:
    return {"spec": {"template": pod(*images)}}


# -- D23 ---------------------------------------------------------------------------------------

def test_repository_normalises_tags_digests_and_docker_hub() -> None:
    assert repository("nginx:1.27") == "docker.io/library/nginx"
    assert repository("bitnami/redis@sha256:abc") == "docker.io/bitnami/redis"
    assert repository("registry.k8s.io/pause:3.9") == "registry.k8s.io/pause"
    assert repository("localhost:5000/app:v1") == "localhost:5000/app"


def test_new_image_learns_then_alerts_once_per_repository(mk: Any, data_dir: str) -> None:
    store = Store.open(data_dir)
    state = StateStore(store)
    d = NewImage(state, CFG)
    create = dict(verb="create", resource="deployments", api_group="apps", name="web", level="Request")
    assert d.observe(mk(0, requestObject=deployment("nginx:1.25", "envoyproxy/envoy:v1"), **create)) == []
    state.flush()
    d = NewImage(StateStore(store), CFG)  # restart: baseline and learning start are kept
    assert d.observe(mk(100, requestObject=deployment("nginx:1.27"), **create)) == []  # new tag, known repo
    [a] = d.observe(mk(110, requestObject=pod("nginx", init=("xmrig/xmrig:latest",)), verb="create",
                       resource="pods", name="p"))
    assert a.rule == "K8s Workload With New Container Image" and a.fields["images"] == ["xmrig/xmrig:latest"]
    assert a.evidence[0].leaf_index is not None
    cron = {"spec": {"jobTemplate": {"spec": {"template": pod("ghcr.io/evil/tool:1")}}}}
    [c] = d.observe(mk(120, requestObject=cron, verb="create", resource="cronjobs", api_group="batch", name="c"))
    assert c.fields["images"] == ["ghcr.io/evil/tool:1"]
    assert d.observe(mk(130, requestObject=deployment("xmrig/xmrig:v2"), verb="patch", resource="daemonsets",
                        name="ds")) == []  # seen now


def test_new_image_quiet_cases(mk: Any) -> None:
    d = NewImage(StateStore(None), CFG)
    d.observe(mk(0, requestObject=pod("nginx"), verb="create", resource="pods", name="first"))
    assert d.observe(mk(100, verb="create", resource="pods", name="meta-only")) == []  # Metadata level
    assert d.observe(mk(100, requestObject=pod("evil/a"), verb="create", resource="pods", name="x", code=403)) == []
    assert d.observe(mk(100, requestObject=pod("evil/b"), verb="get", resource="pods", name="x")) == []
    assert d.observe(mk(100, requestObject=pod("evil/c"), verb="create", resource="pods", name="etcd-n1",
                        user="system:node:n1")) == []  # mirror pods: the static-pod detector's
    assert d.observe(mk(200, requestObject=deployment("evil/c"), verb="create", resource="deployments",
                        name="d")) == []  # but their images join the baseline


# -- D27 ---------------------------------------------------------------------------------------

def mirror(name: str, *images: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "annotations": {"kubernetes.io/config.mirror": "abc"}}, **pod(*images)}


def test_mirror_pod_new_name_or_image_alerts_known_ones_on_new_nodes_stay_quiet(mk: Any, data_dir: str) -> None:
    store = Store.open(data_dir)
    state = StateStore(store)
    d = MirrorPod(state, CFG)
    kw = dict(verb="create", resource="pods", namespace="kube-system")
    assert d.observe(mk(0, requestObject=mirror("etcd-cp1", "registry.k8s.io/etcd:3.5"), name="etcd-cp1",
                        user="system:node:cp1", **kw)) == []  # learning
    state.flush()
    d = MirrorPod(StateStore(store), CFG)
    assert d.observe(mk(100, requestObject=mirror("etcd-cp2", "registry.k8s.io/etcd:3.6"), name="etcd-cp2",
                        user="system:node:cp2", **kw)) == []  # same static pod on another node
    [a] = d.observe(mk(110, requestObject=mirror("backdoor-cp2", "alpine"), name="backdoor-cp2",
                       user="system:node:cp2", **kw))
    assert a.rule == "K8s New Static Pod Created by Node" and a.subject == "system:node:cp2"
    assert a.fields["new"] == ["name kube-system/backdoor", "image docker.io/library/alpine"]
    [b] = d.observe(mk(120, requestObject=mirror("etcd-cp1", "evil/etcd"), name="etcd-cp1",
                       user="system:node:cp1", **kw))
    assert b.fields["new"] == ["image docker.io/evil/etcd"]


def test_mirror_pod_quiet_cases_and_metadata_level(mk: Any) -> None:
    d = MirrorPod(StateStore(None), CFG)
    kw = dict(verb="create", resource="pods", namespace="kube-system")
    d.observe(mk(0, name="kube-proxy-x-n1", user="system:node:n1", **kw))
    assert d.observe(mk(100, requestObject=pod("a"), name="plain-n1", user="system:node:n1", **kw)) == []
    assert d.observe(mk(100, requestObject=mirror("x-n1", "a"), name="x-n1", user="alice", **kw)) == []
    assert d.observe(mk(100, name="kube-proxy-x-n2", user="system:node:n2", **kw)) == []  # known name
    [a] = d.observe(mk(100, name="sneaky-n2", user="system:node:n2", **kw))  # Metadata: a node makes mirror pods only
    assert a.fields["new"] == ["name kube-system/sneaky"]


# -- D58 ---------------------------------------------------------------------------------------

def test_secret_read_baseline(mk: Any, data_dir: str) -> None:
    store = Store.open(data_dir)
    state = StateStore(store)
    d = SecretReadBaseline(state, CFG)
    read = dict(verb="get", resource="secrets", name="db")
    assert d.observe(mk(0, source_ips=["10.0.0.5"], **read)) == []  # learning
    state.flush()
    d = SecretReadBaseline(StateStore(store), CFG)
    assert d.observe(mk(100, source_ips=["10.0.0.5"], **read)) == []  # inside the baseline
    [ip] = d.observe(mk(110, source_ips=["10.0.0.5", "10.9.9.9"], **read))  # trusted IP = last
    assert ip.rule == "K8s Secret Read Outside Identity Baseline" and ip.fields["new"] == {"ip": "10.9.9.9"}
    assert ip.priority == "Warning"
    [ua] = d.observe(mk(120, source_ips=["10.0.0.5"], userAgent="python-requests/2.31", **read))
    assert ua.fields["new"] == {"ua": "python-requests"}
    [ns] = d.observe(mk(130, source_ips=["10.0.0.5"], verb="list", resource="secrets", namespace="prod"))
    assert ns.priority == "Notice" and ns.fields["new"] == {"ns": "prod"}
    [who] = d.observe(mk(140, user="bob", **read))
    assert who.fields["new_reader"] is True and "first secret read" in who.output


def test_secret_read_baseline_quiet_cases(mk: Any) -> None:
    d = SecretReadBaseline(StateStore(None), CFG)
    d.observe(mk(0, verb="get", resource="secrets", name="x"))
    assert d.observe(mk(100, user="system:node:n1", verb="get", resource="secrets", name="x")) == []
    assert d.observe(mk(100, user="system:serviceaccount:kube-system:ctrl", verb="list", resource="secrets")) == []
    assert d.observe(mk(100, user="carol", verb="get", resource="secrets", name="x", code=403)) == []
    assert d.observe(mk(100, user="carol", verb="get", resource="configmaps", name="x")) == []
    assert d.observe(mk(100, user="carol", verb="get", resource="secrets", stage="ResponseStarted")) == []


# -- D62 ---------------------------------------------------------------------------------------

def crb(name: str, role: str, *subjects: dict[str, str], kind: str = "ClusterRole") -> dict[str, Any]:
    return {"metadata": {"name": name}, "roleRef": {"kind": kind, "name": role,
                                                    "apiGroup": "rbac.authorization.k8s.io"},
            "subjects": list(subjects)}


SA = {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}
TOKEN = dict(verb="create", resource="serviceaccounts", subresource="token", namespace="ci", name="deployer")


def test_token_for_sa_bound_to_cluster_admin(mk: Any, data_dir: str) -> None:
    store = Store.open(data_dir)
    state = StateStore(store)
    d = PrivilegedTokenRequest(state, CFG)
    assert d.observe(mk(5, **TOKEN)) == []  # no binding yet
    d.observe(mk(10, verb="create", resource="clusterrolebindings", name="ci-admin", namespace="",
                 requestObject=crb("ci-admin", "cluster-admin", SA)))
    state.flush()
    d = PrivilegedTokenRequest(StateStore(store), CFG)  # restart keeps the bindings
    [a] = d.observe(mk(20, **TOKEN))
    assert a.rule == "K8s Token Requested for Privileged Service Account" and a.priority == "Critical"
    assert [e.leaf_index is not None for e in a.evidence] == [True, True] and "ClusterRoleBinding/ci-admin" in a.output
    kubelet = dict(user="system:node:n1", groups=["system:nodes"], userAgent="kubelet/v1.30.2 (linux/amd64)")
    assert d.observe(mk(21, **kubelet, **TOKEN)) == []  # the kubelet minting pod tokens: machinery
    # ... but not its name alone: the node's certificate used with kubectl, or a kube-system account
    assert d.observe(mk(22, **{**kubelet, "userAgent": "kubectl/v1.30.2"}, **TOKEN))
    assert d.observe(mk(23, user="system:serviceaccount:kube-system:ops", **TOKEN))
    d.observe(mk(30, verb="delete", resource="clusterrolebindings", name="ci-admin", namespace=""))
    assert d.observe(mk(40, **TOKEN)) == []


def test_token_for_sa_bound_to_custom_powerful_role_in_its_namespace(mk: Any) -> None:
    d = PrivilegedTokenRequest(StateStore(None), CFG)
    d.observe(mk(0, verb="create", resource="roles", namespace="ci", name="reader", api_group="rbac.authorization.k8s.io",
                 requestObject={"rules": [{"verbs": ["get", "list"], "resources": ["secrets"], "apiGroups": [""]}]}))
    d.observe(mk(1, verb="create", resource="roles", namespace="ci", name="pods", api_group="rbac.authorization.k8s.io",
                 requestObject={"rules": [{"verbs": ["get"], "resources": ["pods"], "apiGroups": [""]}]}))
    d.observe(mk(2, verb="create", resource="rolebindings", namespace="ci", name="b1",
                 requestObject=crb("b1", "pods", SA, kind="Role")))
    assert d.observe(mk(3, **TOKEN)) == []  # bound, but to a harmless role
    d.observe(mk(4, verb="create", resource="rolebindings", namespace="other", name="b2",
                 requestObject=crb("b2", "edit", SA)))
    assert d.observe(mk(5, **TOKEN)) == []  # powerful, but only in another namespace
    d.observe(mk(6, verb="update", resource="rolebindings", namespace="ci", name="b1",
                 requestObject=crb("b1", "reader", SA, kind="Role")))
    [a] = d.observe(mk(7, **TOKEN))
    assert a.priority == "Warning" and "reads secrets" in a.output
    group = {"kind": "Group", "name": "system:serviceaccounts:ci"}
    d.observe(mk(8, verb="create", resource="clusterrolebindings", name="g", namespace="",
                 requestObject=crb("g", "cluster-admin", group)))
    [g] = d.observe(mk(9, verb="create", resource="serviceaccounts", subresource="token", namespace="ci", name="any"))
    assert g.priority == "Critical" and g.fields["bindings"] == ["ClusterRoleBinding/g"]


def test_token_for_sa_found_through_the_credential_inventory(mk: Any, data_dir: str) -> None:
    from kubetrail.credentials.ledger import Ledger

    store = Store.open(data_dir)
    binding = mk(1, verb="create", resource="clusterrolebindings", name="old", namespace="")
    Ledger(store.credentials).set_binding("ClusterRoleBinding/old", ["sa:ci/deployer"], binding)
    d = PrivilegedTokenRequest(StateStore(store), CFG)
    [a] = d.observe(mk(5, **TOKEN))
    assert a.fields["bindings"] == ["ClusterRoleBinding/old"] and a.evidence[0].key == binding.key
    assert PrivilegedTokenRequest(StateStore(store), CFG).observe(mk(0, **TOKEN)) == []  # before it


# -- D71 ---------------------------------------------------------------------------------------

EXTRA = {"authentication.kubernetes.io/pod-name": ["web-1"], "authentication.kubernetes.io/node-name": ["n1"],
         "authentication.kubernetes.io/credential-id": ["JTI=j1"]}
WEB_SA = "system:serviceaccount:shop:web"


def sa_call(mk: Any, t: float, ip: str, extra: dict[str, Any] | None = None) -> Any:
    return mk(t, user=WEB_SA, groups=["system:serviceaccounts"], user_extra=extra or EXTRA, source_ips=[ip], verb="list", resource="configmaps", namespace="shop")


def status(mk: Any, t: float, pod_ip: str, host_ip: str = "192.168.1.10") -> Any:
    return mk(t, user="system:node:n1", verb="patch", resource="pods", subresource="status", namespace="shop",
              name="web-1", requestObject={"status": {"podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
                                                      "hostIP": host_ip}})


def test_public_ip_ranges() -> None:
    assert is_public("34.120.1.2") and is_public("2a00:1450::1")
    assert not any(is_public(ip) for ip in ("10.1.1.1", "172.20.0.1", "192.168.0.1", "127.0.0.1", "169.254.1.1",
                                            "100.64.3.4", "fd00::1", "fe80::1", "::1", "not-an-ip"))


def test_pod_token_outside_its_pod(mk: Any, data_dir: str) -> None:
    store = Store.open(data_dir)
    state = StateStore(store)
    d = PodTokenElsewhere(state, CFG)
    assert d.observe(sa_call(mk, 0, "10.244.9.9")) == []  # the pod's address is unknown: quiet
    d.observe(status(mk, 1, "10.244.1.5"))
    d.observe(mk(2, user="system:node:n1", verb="patch", resource="nodes", subresource="status", namespace="",
                 name="n1", requestObject={"status": {"addresses": [{"type": "InternalIP", "address": "192.168.1.11"},
                                                                   {"type": "Hostname", "address": "n1"}]}}))
    state.flush()
    d = PodTokenElsewhere(StateStore(store), CFG)  # restart keeps the inventory
    assert d.observe(sa_call(mk, 10, "10.244.1.5")) == []  # from its pod
    assert d.observe(sa_call(mk, 11, "192.168.1.10")) == []  # from its node (hostIP)
    assert d.observe(sa_call(mk, 12, "192.168.1.11")) == []  # from its node (node status)
    assert d.observe(sa_call(mk, 13, "127.0.0.1")) == []  # loopback: not judged
    [a] = d.observe(sa_call(mk, 14, "10.244.2.7"))
    assert a.rule == "K8s Pod-Bound Token Used Outside Its Pod" and a.priority == "Warning"
    assert a.fields["pod"] == "shop/web-1" and a.fields["pod_ips"] == ["10.244.1.5"]
    [p] = d.observe(sa_call(mk, 15, "34.120.1.2"))
    assert p.priority == "Critical" and p.fields["public"] is True


def test_pod_token_inventory_follows_pod_lifecycle(mk: Any) -> None:
    d = PodTokenElsewhere(StateStore(None), CFG)
    unknown = {"authentication.kubernetes.io/pod-name": ["ghost"], "authentication.kubernetes.io/node-name": ["nx"]}
    [pub] = d.observe(sa_call(mk, 0, "34.120.1.2", unknown))  # public: alerts even when nothing is known
    assert pub.priority == "Critical"
    assert d.observe(sa_call(mk, 0, "10.9.9.9", unknown)) == []
    d.observe(status(mk, 1, "10.244.1.5"))
    d.observe(mk(2, user="alice", verb="delete", resource="pods", namespace="shop", name="web-1"))
    assert d.observe(sa_call(mk, 3, "10.244.1.5")) == []  # grace period: the pod still runs
    d.observe(status(mk, 4, "10.244.3.3"))  # recreated with a new address
    assert len(d.observe(sa_call(mk, 5, "10.244.1.5"))) == 1
    d.observe(mk(6, user="system:node:n1", verb="delete", resource="pods", namespace="shop", name="web-1"))
    no_node = {"authentication.kubernetes.io/pod-name": ["web-1"]}
    assert d.observe(sa_call(mk, 7, "10.244.8.8", no_node)) == []  # gone, and no node named: unknown
    assert d.observe(mk(8, user="alice", source_ips=["34.120.1.2"], verb="list", resource="pods")) == []


# -- through the detection consumer --------------------------------------------------------------

def test_consumer_runs_the_new_detectors_and_a_restart_keeps_their_baselines(mk: Any, data_dir: str) -> None:
    from kubetrail.alerts.config import DetectSettings
    from kubetrail.alerts.store import list_alerts
    from kubetrail.detect.consumer import DetectConsumer

    store = Store.open(data_dir)
    settings = DetectSettings(stateful=StatefulConfig(learning_secs=60))
    c = DetectConsumer(store, settings, deliver=False)
    c.consume([mk(0, requestObject=pod("nginx"), verb="create", resource="pods", name="a"),
               mk(1, verb="get", resource="secrets", name="s", source_ips=["10.0.0.5"])], store)
    c.close()
    c = DetectConsumer(store, settings, deliver=False)  # restart: learning is over, baselines kept
    c.consume([mk(100, requestObject=pod("nginx:2"), verb="create", resource="pods", name="b"),
               mk(101, verb="get", resource="secrets", name="s", source_ips=["10.0.0.5"]),
               mk(102, requestObject=pod("evil/miner"), verb="create", resource="pods", name="c"),
               mk(103, verb="get", resource="secrets", name="s", source_ips=["10.7.7.7"])], store)
    c.close()
    rules = [a.rule for a in list_alerts(store)]
    assert rules.count("K8s Workload With New Container Image") == 1
    assert rules.count("K8s Secret Read Outside Identity Baseline") == 1


def test_trusted_cidrs_and_image_allow_list(mk: Any) -> None:
    """NAT/egress networks never count as 'elsewhere'; allowed image repositories never alert as new."""
    cfg = StatefulConfig(learning_secs=60, trusted_cidrs=["203.0.113.0/24", "10.250.0.0/16"],
                         image_allow=["registry.corp.example/", "docker.io/library/"])
    d = PodTokenElsewhere(StateStore(None), cfg)
    d.observe(status(mk, 1, "10.244.1.5"))
    assert d.observe(sa_call(mk, 10, "203.0.113.9")) == []  # public, but our egress NAT
    assert d.observe(sa_call(mk, 11, "10.250.3.3")) == []  # private proxy network
    assert [a.priority for a in d.observe(sa_call(mk, 12, "34.120.1.2"))] == ["Critical"]
    images = NewImage(StateStore(None), cfg)
    images.observe(mk(0, requestObject=pod("busybox"), verb="create", resource="pods", name="first"))
    quiet = images.observe(mk(100, requestObject=pod("registry.corp.example/team/app:2", "redis:7"),
                              verb="create", resource="pods", name="p"))
    assert quiet == []
    [a] = images.observe(mk(110, requestObject=pod("ghcr.io/evil/tool:1"), verb="create", resource="pods", name="q"))
    assert a.fields["images"] == ["ghcr.io/evil/tool:1"]


def test_bad_trusted_cidr_is_a_config_error() -> None:
    import pytest

    from kubetrail.alerts.config import parse_settings
    from kubetrail.errors import ConfigError

    with pytest.raises(ConfigError, match=r"stateful.trusted_cidrs\[1\]"):
        parse_settings({"stateful": {"trusted_cidrs": ["10.0.0.0/8", "10.0.0.0/99"]}})
