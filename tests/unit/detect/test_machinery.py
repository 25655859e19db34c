"""Issue 15: the cluster's own machinery is known by what it does, not by its name — so a controller's
stolen token used from elsewhere or with another tool, and a controller identity doing what no
controller does (binding someone to cluster-admin), still alert, on top of a quiet cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from quiet_helpers import SETTINGS, describe, ingest

from kubetrail.alerts.store import list_alerts
from kubetrail.demo.quiet import Profile, generate
from kubetrail.detect.engine import BUILTIN_DIR
from kubetrail.detect.stateful.machinery import CONTROLLERS

OUT = "K8s Control-Plane Credential Used Out of Profile"
CRB = {"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
       "metadata": {"name": "backdoor"}, "subjects": [{"kind": "User", "name": "mallory",
                                                        "apiGroup": "rbac.authorization.k8s.io"}],
       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}}


def test_the_controller_lists_agree() -> None:
    with open(f"{BUILTIN_DIR}/01-machinery.yaml", encoding="utf-8") as fh:
        items = next(x for x in yaml.safe_load(fh) if x.get("list") == "kt_kcm_controllers")["items"]
    assert set(items) == CONTROLLERS


def _after(events: list[dict[str, Any]], user: str, n: int, **changes: Any) -> dict[str, Any]:
    """A request by ``user`` (copied from the corpus: same credential) at the end of the log, changed."""
    base = next(e for e in events if e["user"].get("username") == user and e["stage"] == "ResponseComplete")
    last = max(e["stageTimestamp"] for e in events)
    return {**base, "auditID": f"stolen-{n}", "requestReceivedTimestamp": last, "stageTimestamp": last, **changes}


def _rules(data: Path, events: list[dict[str, Any]]) -> dict[str, list[Any]]:
    store = ingest(data, events)
    try:
        out: dict[str, list[Any]] = {}
        for a in list_alerts(store):
            out.setdefault(a.rule, []).append(a)
        return out
    finally:
        store.close()


@pytest.mark.parametrize("version", ["1.20", "1.24", "1.32"])
def test_a_stolen_controller_token_alerts(version: str, tmp_path: Path) -> None:
    events = generate(Profile(version))
    sa = "system:serviceaccount:kube-system:endpointslice-controller"
    secrets = {"objectRef": {"resource": "secrets", "apiVersion": "v1"}, "verb": "list",
               "requestURI": "/api/v1/secrets"}
    curl = _after(events, sa, 1, userAgent="curl/8.5.0", **secrets)  # from the control-plane node, with curl
    pod = _after(events, sa, 2, sourceIPs=["10.244.3.17"], **secrets)  # its own user agent, from a pod
    found = _rules(tmp_path / "d", events + [curl, pod])
    assert OUT in found, describe([a for v in found.values() for a in v])
    why = " | ".join(a.output for a in found[OUT])
    assert "curl/8.5.0" in why and "10.244.3.17" in why
    assert "Secrets Listed Across Cluster or System Namespace" in found  # no longer the controller at work
    assert all(a.subject == sa for a in found[OUT])


@pytest.mark.parametrize("user", ["system:serviceaccount:kube-system:replicaset-controller",
                                  "system:kube-controller-manager"])
def test_a_controller_binding_someone_to_cluster_admin_alerts(user: str, tmp_path: Path) -> None:
    events = generate(Profile("1.28"))
    crb = _after(events, user, 1, verb="create", level="RequestResponse",
                 requestURI="/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                 objectRef={"resource": "clusterrolebindings", "apiGroup": "rbac.authorization.k8s.io",
                            "apiVersion": "v1"},
                 responseStatus={"metadata": {}, "code": 201}, requestObject=CRB, responseObject=CRB)
    found = _rules(tmp_path / "d", [*events, crb])
    assert "Binding to Privileged Role" in found, describe([a for v in found.values() for a in v])
    assert found["Binding to Privileged Role"][0].subject == user


def test_machinery_credentials_out_of_place(tmp_path: Path) -> None:
    events = generate(Profile("1.32"))
    node = next(e["user"]["username"] for e in events if e["user"].get("username", "").startswith("system:node:"))
    moved = _after(events, node, 1, sourceIPs=["10.0.0.99"])  # a kubelet certificate on another machine
    loop = _after(events, "system:apiserver", 2, sourceIPs=["10.0.0.12"])  # the loopback client, not on loopback
    found = _rules(tmp_path / "d", events + [moved, loop])
    subjects = {a.subject for a in found.get(OUT, [])}
    assert subjects == {node, "system:apiserver"}, describe([a for v in found.values() for a in v])


def test_the_out_of_profile_detector_takes_exceptions_and_can_be_disabled(tmp_path: Path) -> None:
    """Item 4: a stateful detector is tuned like a Falco rule, by its id or its name in detect.yaml."""
    events = generate(Profile("1.24"))
    sa = "system:serviceaccount:kube-system:endpointslice-controller"
    curl = _after(events, sa, 1, userAgent="curl/8.5.0")
    pod = _after(events, sa, 2, sourceIPs=["10.244.3.17"])
    ops = {"rule": OUT, "name": "ops-debugging", "fields": ["subject", "user_agent"], "comps": ["=", "startswith"],
           "values": [[sa, "curl/"]]}
    for n, (tuning, left) in enumerate(((({"exceptions": [ops]}), {"10.244.3.17"}),
                                        ({"disable": ["machinery"]}, set()),
                                        ({"disable": [OUT]}, set()))):
        store = ingest(tmp_path / f"d{n}", events + [curl, pod], {**SETTINGS, **tuning})
        try:
            outs = [a for a in list_alerts(store) if a.rule == OUT]
        finally:
            store.close()
        assert {ip for a in outs for ip in ("10.244.3.17",) if ip in a.output} == left, (tuning, describe(outs))
        assert len(outs) == len(left) and not any("curl/" in a.output for a in outs), describe(outs)
