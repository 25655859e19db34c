"""deploy/kubernetes is checked, not hoped: every overlay renders, every object passes the Kubernetes
OpenAPI schemas strictly (kubernetes-validate), RBAC is exactly the least-privilege list, every
image follows the Dockerfile's tag scheme, Pod Security "restricted" holds everywhere but the
documented node-agent exceptions, probes/resources/priority are set, NetworkPolicies let only the
apiserver reach the webhook and only Prometheus reach metrics, and nothing secret is embedded.

The kubetrail configs embedded in ConfigMaps are loaded by kubetrail's own loader in
test_embedded_configs.py.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions, latest_version
from kustomize_render import Obj, render

ROOT = Path(__file__).resolve().parents[3]
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.parent.name for p in (KUBE / "overlays").glob("*/kustomization.yaml"))
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
WORKLOADS = ("DaemonSet", "Deployment", "StatefulSet", "Job", "CronJob")


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[Obj]:
    return render(KUBE / "overlays" / request.param)


def pod_specs(objs: list[Obj]) -> list[tuple[Obj, Obj]]:
    """(workload, pod spec) for every workload."""
    out = []
    for o in objs:
        if o["kind"] == "CronJob":
            out.append((o, o["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
        elif o["kind"] in WORKLOADS:
            out.append((o, o["spec"]["template"]["spec"]))
    return out


def containers(spec: Obj) -> list[Obj]:
    return list(spec.get("initContainers") or []) + list(spec["containers"])


def test_both_overlays_exist() -> None:
    assert OVERLAYS == ["kubeadm", "managed"]


def test_matches_kubectl_kustomize() -> None:
    """The renderer used here agrees with kustomize itself, where a kubectl with kustomize v4+ exists
    (this machine's kubectl has v5; Debian's kubernetes-client 1.20 is too old for `patches:`)."""
    kubectl = shutil.which("kubectl")
    version = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True, check=False).stdout \
        if kubectl else ""
    m = re.search(r"Kustomize Version: v(\d+)", version)
    if not m or int(m.group(1)) < 4:
        pytest.skip("no kubectl with kustomize v4+ on PATH: the cross-check of the renderer is skipped")
    for overlay in OVERLAYS:
        out = subprocess.run([kubectl, "kustomize", str(KUBE / "overlays" / overlay)], capture_output=True,
                             text=True, check=True).stdout
        theirs = sorted((yaml.safe_dump(d, sort_keys=True) for d in yaml.safe_load_all(out) if d), key=str)
        ours = sorted((yaml.safe_dump(d, sort_keys=True) for d in render(KUBE / "overlays" / overlay)), key=str)
        assert ours == theirs, overlay


@pytest.mark.parametrize("k8s", sorted({"1.31.0", latest_version()} & set(all_versions())))
def test_every_object_validates_strictly(k8s: str) -> None:
    for overlay in OVERLAYS:
        objs = render(KUBE / "overlays" / overlay)
        assert len(objs) > 30
        for obj in objs:
            try:
                kubernetes_validate.validate(obj, k8s, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(str(p) for p in exc.path)
                pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']} at {where}: {exc.message}")


# ---- RBAC ------------------------------------------------------------------------------------------

# ServiceAccount -> the exact (apiGroup, resource, verb) triples it may use, cluster-wide.
LEAST_PRIVILEGE = {
    "kubetrail-node/kubetrail-agent": {(g, r, v) for g, r in (("", "pods"), ("", "namespaces"), ("", "nodes"),
                                                             ("apps", "replicasets"), ("batch", "jobs"))
                                       for v in ("get", "list", "watch")},
    "kubetrail/kubetrail-cluster-agent": {(g, "events", v) for g in ("", "events.k8s.io")
                                          for v in ("get", "list", "watch")},
}


def test_rbac_is_exactly_the_least_privilege_list(rendered: list[Obj]) -> None:
    roles = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in rendered
             if o["kind"] in ("ClusterRole", "Role")}
    granted: dict[str, set[tuple[str, str, str]]] = {}
    for b in (o for o in rendered if o["kind"] in ("ClusterRoleBinding", "RoleBinding")):
        ref = b["roleRef"]
        role = roles[(ref["kind"], "" if ref["kind"] == "ClusterRole" else b["metadata"]["namespace"], ref["name"])]
        for s in b["subjects"]:
            assert s["kind"] == "ServiceAccount", s
            for rule in role["rules"]:
                assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
                granted.setdefault(f"{s['namespace']}/{s['name']}", set()).update(
                    (g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"])
    assert granted == LEAST_PRIVILEGE
    for triples in granted.values():
        assert not any("*" in t for triple in triples for t in triple)


def test_one_service_account_per_component(rendered: list[Obj]) -> None:
    accounts = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in rendered
                if o["kind"] == "ServiceAccount"}
    used: dict[tuple[str, str], str] = {}
    for workload, spec in pod_specs(rendered):
        ns, name = workload["metadata"]["namespace"], workload["metadata"]["name"]
        sa = spec.get("serviceAccountName")
        if sa is None:  # third-party pods (NATS, PostgreSQL) get no token at all
            assert spec.get("automountServiceAccountToken") is False, name
            continue
        assert (ns, sa) in accounts, f"{name} uses a ServiceAccount that is not defined: {sa}"
        assert (ns, sa) not in used, f"{name} shares {sa} with {used.get((ns, sa))}"
        used[(ns, sa)] = name
        if f"{ns}/{sa}" not in LEAST_PRIVILEGE:  # no API access needed: no token mounted
            assert spec.get("automountServiceAccountToken") is False, name
            assert accounts[(ns, sa)].get("automountServiceAccountToken") is False, sa


# ---- images ----------------------------------------------------------------------------------------

def test_images_follow_the_tag_scheme(rendered: list[Obj]) -> None:
    """kubetrail images are `[REGISTRY/]kubetrail:<pyproject version>` (the Dockerfile's ARG VERSION);
    third-party images carry an exact x.y.z tag."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ARG VERSION={VERSION}" in dockerfile and f"kubetrail:{VERSION}" in dockerfile
    ours = re.compile(r"^(?:[a-z0-9.-]+(?::\d+)?/)*kubetrail:" + re.escape(VERSION) + r"(?:@sha256:[0-9a-f]{64})?$")
    seen = set()
    for _, spec in pod_specs(rendered):
        for c in containers(spec):
            image = c["image"]
            seen.add(image)
            if image.split("@")[0].rsplit("/", 1)[-1].split(":")[0] == "kubetrail":
                assert ours.match(image), image
            else:
                assert re.search(r":\d+\.\d+(\.\d+)?(-[a-z0-9]+)?(@sha256:[0-9a-f]{64})?$", image), image
            assert c.get("imagePullPolicy") in (None, "IfNotPresent"), image
    assert f"kubetrail:{VERSION}" in seen


# ---- Pod Security ----------------------------------------------------------------------------------

RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
# the documented exceptions (docs/deploy.md): host log files need root + CAP_DAC_READ_SEARCH + hostPath
NODE_EXCEPTIONS = {"kubetrail-agent", "kubetrail-check-apiserver"}


def restricted_violations(spec: Obj) -> list[str]:
    """Pod Security Standards "restricted" (v1.25+ profile), checked on a pod spec."""
    bad = []
    psc = spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            bad.append(flag)
    for v in spec.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            bad.append(f"volume {v['name']}: {sorted(kinds)}")
    for c in containers(spec):
        sc = c.get("securityContext") or {}
        n = c["name"]
        if sc.get("privileged"):
            bad.append(f"{n}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{n}: allowPrivilegeEscalation")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{n}: capabilities not dropped")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            bad.append(f"{n}: adds {caps['add']}")
        if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            bad.append(f"{n}: runAsNonRoot")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            bad.append(f"{n}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{n}: seccomp {seccomp}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                bad.append(f"{n}: hostPort")
    return bad


def test_pod_security(rendered: list[Obj]) -> None:
    namespaces = {o["metadata"]["name"]: o["metadata"]["labels"] for o in rendered if o["kind"] == "Namespace"}
    assert namespaces["kubetrail"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert namespaces["kubetrail-node"]["pod-security.kubernetes.io/warn"] == "restricted"
    for workload, spec in pod_specs(rendered):
        name, ns = workload["metadata"]["name"], workload["metadata"]["namespace"]
        bad = restricted_violations(spec)
        for c in containers(spec):
            assert (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is True, f"{name}/{c['name']}"
        if ns == "kubetrail":
            assert not bad, f"{name}: {bad}"
            continue
        assert name in NODE_EXCEPTIONS, name
        # exactly the documented exception: root, DAC_READ_SEARCH, hostPath; everything else restricted
        allowed = re.compile(r"^(volume \S+: \['hostPath'\]|\w+: runAsNonRoot|\w+: runAsUser 0|"
                             r"\w+: adds \['DAC_READ_SEARCH'\])$")
        assert bad and all(allowed.match(b) for b in bad), f"{name}: {bad}"
        mounts = {m["name"]: m for c in containers(spec) for m in c.get("volumeMounts") or []}
        for v in spec["volumes"]:
            if "hostPath" in v and v["name"] != "state":
                assert mounts[v["name"]].get("readOnly") is True, f"{name}: hostPath {v['name']} is writable"


# ---- the node agent --------------------------------------------------------------------------------

def test_agent_daemonset(rendered: list[Obj]) -> None:
    [ds] = [o for o in rendered if o["kind"] == "DaemonSet"]
    spec = ds["spec"]["template"]["spec"]
    classes = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "PriorityClass"}
    assert classes[spec["priorityClassName"]]["value"] >= 1_000_000
    assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"} \
        in spec["tolerations"]
    [c] = spec["containers"]
    host = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    ro = {host[m["name"]]: m["mountPath"] for m in c["volumeMounts"] if m["name"] in host and m.get("readOnly")}
    # read-only: exactly the host directories its config reads, at the same paths (the kubelet's
    # /var/log/containers symlinks point into /var/log/pods, so both keep their host paths)
    [cm] = [o for o in rendered if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "kubetrail-agent"]
    config = yaml.safe_load(cm["data"]["agent.yaml"])
    reads = {"/var/log/containers"}
    for src in config["sources"]:
        reads.add({"cri_logs": src.get("root"), "journald": src.get("directory"),
                   "audit_file": posixpath.dirname(src.get("path", ""))}[src["type"]])
    assert set(ro) == reads and all(ro[p] == p for p in ro)
    assert ("/var/log/kubernetes/audit" in reads) == (any(o["kind"] == "CronJob" for o in rendered))
    wal = [m for m in c["volumeMounts"] if m["name"] == "state"]
    assert wal and not wal[0].get("readOnly") and host["state"] == "/var/lib/kubetrail-agent"


def test_probes_and_resources(rendered: list[Obj]) -> None:
    for workload, spec in pod_specs(rendered):
        for c in spec["containers"]:
            res = c.get("resources") or {}
            assert {"cpu", "memory"} <= set(res.get("requests") or {}), c["name"]
            assert "memory" in (res.get("limits") or {}), c["name"]
            if workload["kind"] in ("Job", "CronJob"):
                continue
            for probe in ("livenessProbe", "readinessProbe"):
                assert probe in c, f"{workload['metadata']['name']}: {probe}"
            if c["image"].startswith("kubetrail"):
                assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"


# ---- network ---------------------------------------------------------------------------------------

def _selects(policy: Obj, labels: dict[str, str]) -> bool:
    sel = policy["spec"]["podSelector"]
    if any(labels.get(k) != v for k, v in (sel.get("matchLabels") or {}).items()):
        return False
    for e in sel.get("matchExpressions") or []:
        if e["operator"] != "In":
            raise AssertionError(f"selector operator {e['operator']} not modelled here")
        if labels.get(e["key"]) not in e["values"]:
            return False
    return True


PROMETHEUS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
              "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}


def _peers_for_port(rendered: list[Obj], ns: str, labels: dict[str, str], port: str) -> list[Obj]:
    peers = []
    for p in (o for o in rendered if o["kind"] == "NetworkPolicy" and o["metadata"]["namespace"] == ns):
        if not _selects(p, labels):
            continue
        for rule in p["spec"].get("ingress") or []:
            if any(x.get("port") == port for x in rule.get("ports") or []):
                peers.extend(rule.get("from") or [{"anything": True}])
    return peers


def test_network_policies(rendered: list[Obj]) -> None:
    deny = {o["metadata"]["namespace"] for o in rendered if o["kind"] == "NetworkPolicy"
            and o["spec"]["podSelector"] == {} and o["spec"]["policyTypes"] == ["Ingress"] and not o["spec"].get("ingress")}
    assert deny == {"kubetrail", "kubetrail-node"}
    for workload, spec in pod_specs(rendered):
        labels = (workload["spec"].get("template") or {}).get("metadata", {}).get("labels", {})
        ns = workload["metadata"]["namespace"]
        for c in spec["containers"]:
            for port in c.get("ports") or []:
                peers = _peers_for_port(rendered, ns, labels, port["name"])
                if port["name"] in ("metrics", "monitor"):
                    assert peers == [PROMETHEUS], (workload["metadata"]["name"], port["name"], peers)
                elif port["name"] == "webhook":
                    assert peers and all(set(p) == {"ipBlock"} for p in peers), peers
                    assert all(p["ipBlock"]["cidr"] != "0.0.0.0/0" for p in peers)
                else:
                    assert peers and {"anything": True} not in peers, (workload["metadata"]["name"], port)


def test_webhook_address_matches_deploy_apiserver() -> None:
    from kubetrail.cli.deploy import DEFAULT_WEBHOOK_SERVER

    objs = render(KUBE / "overlays" / "kubeadm")
    [svc] = [o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "kubetrail-webhook"]
    assert f"https://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}/" == DEFAULT_WEBHOOK_SERVER


# ---- secrets ---------------------------------------------------------------------------------------

def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in _walk(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [x for i, v in enumerate(node) for x in _walk(v, f"{path}[{i}]")]
    return [(path, node)]


def test_no_secrets_embedded(rendered: list[Obj]) -> None:
    assert not [o for o in rendered if o["kind"] == "Secret"], "Secrets are created by the user, never shipped"
    for _, spec in pod_specs(rendered):
        for c in containers(spec):
            for env in c.get("env") or []:
                if re.search(r"(?i)pass|secret|token|key", env["name"]):
                    assert "valueFrom" in env and "value" not in env, env
    for path, value in (x for o in rendered for x in _walk(o)):
        if isinstance(value, str):
            assert "PRIVATE KEY" not in value and not re.search(r"postgres(ql)?://[^@/\s]*:[^@/\s]*@", value), path
