"""Issue 15: every identity accounted for, facts versus attacks, tokens minted for another account."""

from __future__ import annotations

import json

from click.testing import CliRunner
from cred_helpers import event, token_request, use

from kubetrail.alerts.store import list_alerts
from kubetrail.cli import cli
from kubetrail.credentials.report import summary

MASTERS = ["system:masters", "system:authenticated"]
KCM_UA = "kube-controller-manager/v1.20.15 (linux/amd64) kubernetes/8f1e5bf/tokens-controller"


def test_identities_without_a_credential_are_listed_masters_first(cluster) -> None:
    cluster.feed(*[use("kubernetes-admin", i, groups=MASTERS, ip="10.0.0.10") for i in range(7)],
                 *[use("system:kube-scheduler", 10 + i, ip="10.0.0.10", ua="kube-scheduler/v1.20.15") for i in range(20)],
                 *[use("alice@example.com", 40 + i, groups=["devs", "system:authenticated"], ip=f"192.168.1.{i % 2}")
                   for i in range(3)],
                 use("system:apiserver", 50, groups=MASTERS, ip="::1", ua="kube-apiserver/v1.20.15 (linux/amd64)"),
                 use("system:anonymous", 51, groups=["system:unauthenticated"]), use("", 52, code=401))
    # the second stage of one request counts once
    cluster.feed(use("kubernetes-admin", 0, groups=MASTERS, ip="10.0.0.10", stage="ResponseStarted",
                     audit_id=cluster.records(use("kubernetes-admin", 99, groups=MASTERS))[0].meta.audit_id))
    listed = cluster.list(unaccounted=True, identities=True)
    assert [e["id"] for e in listed][0] == "unknown/kubernetes-admin"
    admin = listed[0]
    assert admin["kind"] == "unknown" and admin["groups"] == ["system:masters"] and admin["uses"] == 8
    assert admin["source_ips"] == ["10.0.0.10"] and admin["first_used"] and admin["last_used"]
    assert "system:masters" in admin["reason"] and "CSR API" in admin["reason"]
    assert [f["flag"] for f in admin["flags"]] == ["privileged-group"] and admin["flags"][0]["class"] == "fact"
    ids = {e["id"] for e in listed}
    assert {"unknown/system:kube-scheduler", "unknown/alice@example.com"} <= ids
    assert "kube-scheduler's client certificate" in cluster.show("unknown/system:kube-scheduler")["reason"]
    # the apiserver's loopback client is machinery, accounted for; nobody anonymous is an identity
    assert "unknown/system:apiserver" not in ids and "unknown/system:anonymous" not in ids
    loop = cluster.show("unknown/system:apiserver")
    assert loop["machinery"] == "kube-apiserver loopback client" and not loop["unaccounted"] and not loop["flags"]
    # standing facts raise no alert
    assert not [a for a in list_alerts(cluster.store) if a.origin == "credentials"]
    found = summary(cluster.store)
    assert found["system_masters_identities"] == ["kubernetes-admin"] and found["unaccounted_identities"] == 3


def test_creds_list_unaccounted_cli_puts_the_admin_first(cluster) -> None:
    cluster.feed(*[use("system:kube-controller-manager", i, ua=KCM_UA) for i in range(30)],
                 *[use("kubernetes-admin", 40 + i, groups=MASTERS) for i in range(4)])
    cluster.close()
    out = CliRunner().invoke(cli, ["creds", "list", "--unaccounted", *cluster.cli_args])
    assert out.exit_code == 0, out.output
    lines = [ln for ln in out.output.splitlines() if ln.startswith("unknown/")]
    assert lines[0].startswith("unknown/kubernetes-admin") and " 4 " in lines[0]
    assert lines[1].startswith("unknown/system:kube-controller")
    found = CliRunner().invoke(cli, ["creds", "summary", "--json", *cluster.cli_args])
    assert found.exit_code == 0, found.output
    doc = json.loads(found.stdout)
    assert doc["system_masters_identities"] == ["kubernetes-admin"] and doc["unaccounted_identities"] == 2
    assert doc["flags"] == [{"flag": "privileged-group", "priority": "Critical", "facts": 1, "alerted": 0}]
    text = CliRunner().invoke(cli, ["creds", "summary", *cluster.cli_args]).output
    assert "1 in system:masters: kubernetes-admin" in text


def test_token_minted_by_one_account_for_another_is_flagged(cluster) -> None:
    pod = {"kind": "Pod", "name": "web-1", "uid": "u1"}
    cluster.feed(
        token_request("ci", "deployer", user="system:serviceaccount:ci:builder", at=0, jti="j-lateral",
                      groups=["system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"]),
        token_request("shop", "web", user="system:node:w1", at=1, jti="j-kubelet", bound=pod,
                      groups=["system:nodes", "system:authenticated"], expiration_seconds=3607),
        token_request("kube-system", "replicaset-controller", user="system:kube-controller-manager", at=2,
                      jti="j-kcm", ua=KCM_UA),
        token_request("ci", "deployer", user="system:serviceaccount:ci:deployer", at=3, jti="j-self"))
    lateral = cluster.flags("j-lateral")["minted-for-another"]
    assert lateral["class"] == "fact" and "system:serviceaccount:ci:builder (a service account)" in lateral["explanation"]
    for machinery in ("j-kubelet", "j-kcm", "j-self"):
        assert "minted-for-another" not in cluster.flags(machinery), machinery


def test_a_fact_becomes_an_attack_when_its_creation_arrives_late(cluster) -> None:
    crb = {"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": "ops"},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
           "subjects": [{"kind": "ServiceAccount", "name": "ops", "namespace": "kube-system"}]}
    sa = "system:serviceaccount:kube-system:ops"
    cluster.feed(event(verb="create", resource="clusterrolebindings", api_group="rbac.authorization.k8s.io",
                       name="ops", at=0, user="alice", level="RequestResponse", request=crb, response=crb, code=201),
                 use(sa, 100, "JTI=j-late", groups=["system:serviceaccounts", "system:authenticated"]))
    assert cluster.flags("j-late")["cluster-admin-sa"]["class"] == "fact"  # nobody known made it yet
    assert not [a for a in list_alerts(cluster.store) if a.origin == "credentials"]
    cluster.feed(token_request("kube-system", "ops", user="mallory", at=90, jti="j-late"))  # read late
    flag = cluster.flags("j-late")["cluster-admin-sa"]
    assert flag["class"] == "attack" and flag["alert_id"] is not None
    [alert] = [a for a in list_alerts(cluster.store) if a.origin == "credentials"]
    assert alert.rule == "Credential risk: cluster-admin-sa"


def test_disable_and_exceptions_apply_to_credential_risks(cluster) -> None:
    with open(f"{cluster.data_dir}/detect.yaml", "w") as fh:
        fh.write("disable: ['Credential risk: multiple-source-ips']\n"
                 "exceptions:\n- {rule: 'Credential risk: privileged-group', name: breakglass, fields: [subject],"
                 " values: [[breakglass]]}\n")
    from kubetrail.alerts.store import settings_for
    from kubetrail.credentials.consumer import CredentialConsumer

    cluster.consumer = CredentialConsumer(cluster.store, lateness_secs=0, settings=settings_for(cluster.data_dir))
    cluster.feed(*[use("breakglass", i, groups=MASTERS, ip=f"10.0.0.{i}") for i in range(3)],
                 *[use("admin2", 10 + i, groups=MASTERS, ip=f"10.0.1.{i}") for i in range(3)])
    assert cluster.flags("unknown/breakglass") == {}
    assert set(cluster.flags("unknown/admin2")) == {"privileged-group"}
