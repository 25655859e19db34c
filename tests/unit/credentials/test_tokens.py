"""Service-account tokens through TokenRequest: JTI links, the silent expiry extension, probable links,
unaccounted and external tokens, and the cluster-admin binding flag."""

from __future__ import annotations

import uuid

from cred_helpers import event, make_jwt, ns_at, sa_claims, token_request, use

from kubetrail.timefmt import format_ns

SA_USER = "system:serviceaccount:ci:deployer"
SA_GROUPS = ["system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"]
YEAR = 365 * 86400


def test_kubelet_pod_token_keeps_nominal_and_effective_expiry(cluster) -> None:
    jti = str(uuid.uuid4())
    token = make_jwt(sa_claims("ci", "deployer", jti, iat=0, exp=YEAR, pod="web-1", node="worker-1",
                               warnafter=3607))
    made = cluster.feed(token_request("ci", "deployer", user="system:node:worker-1", at=0, token=token, jti=jti,
                                      expiration_seconds=3607, bound={"kind": "Pod", "name": "web-1", "uid": "u1"},
                                      groups=["system:nodes", "system:authenticated"], audit_id="tr-1"))
    uses = cluster.feed(*[use(SA_USER, 100 + i, f"JTI={jti}", groups=SA_GROUPS, audit_id=f"t-use-{i}",
                              extra={"authentication.kubernetes.io/pod-name": ["web-1"]}) for i in range(2)])
    [e] = cluster.list()
    assert e["id"] == f"jti/{jti}" and e["kind"] == "token" and e["jti"] == jti
    assert e["credential_id"] == f"JTI={jti}" and e["fingerprint"] is None and e["unaccounted"] is False
    assert e["subject"] == SA_USER and e["groups"] == SA_GROUPS[:2]
    assert e["created_by"] == "system:node:worker-1" and e["approved_by"] is None
    assert e["created_at"] == format_ns(made[0].time)
    assert e["expires_at"] == format_ns(ns_at(YEAR))  # what the apiserver enforces (the JWT exp)
    assert e["nominal_expires_at"] == format_ns(ns_at(3607))  # what status.expirationTimestamp said
    assert (e["uses"], e["exact_uses"]) == (2, 2)
    assert e["first_used"] == format_ns(uses[0].time) and e["last_used"] == format_ns(uses[1].time)
    assert e["flags"] == [] and e["policy_gaps"] == []
    assert e["evidence"]["creation"] == [{"action": "token-requested", "auditID": "tr-1", "leaf_index": 0,
                                          "link": "exact"}]
    d = cluster.show(jti)["details"]
    assert d["bound_object"] == {"kind": "Pod", "name": "web-1", "uid": "u1"}
    assert d["claims_pod"] == "web-1" and d["claims_node"] == "worker-1"
    assert d["audiences"] == ["https://kubernetes.default.svc.cluster.local"]
    assert d["requested_expiration_seconds"] == 3607 and d["warnafter"] == ns_at(3607)


def test_metadata_level_token_request_still_has_the_jti(cluster) -> None:
    jti = str(uuid.uuid4())
    cluster.feed(token_request("ci", "deployer", user="alice", at=0, jti=jti, level="Metadata",
                               groups=["devs", "system:authenticated"]),
                 use(SA_USER, 10, f"JTI={jti}", groups=SA_GROUPS))
    [e] = cluster.list()
    assert e["id"] == f"jti/{jti}" and e["created_by"] == "alice" and e["uses"] == 1
    assert e["expires_at"] is None
    assert {g["code"] for g in e["policy_gaps"]} == {"token-metadata"}
    assert "long-lived" not in {f["flag"] for f in e["flags"]}  # unknown is not "no expiry"


def test_request_level_extension_is_assumed_for_kubelet_shaped_requests(cluster) -> None:
    cluster.feed(token_request("ci", "deployer", user="system:node:w", at=0, jti="j-1", level="Request",
                               expiration_seconds=3607, bound={"kind": "Pod", "name": "p"}))
    e = cluster.list()[0]
    assert e["expires_at"] == format_ns(ns_at(YEAR) + 10_000_000)
    assert e["nominal_expires_at"] == format_ns(ns_at(3607) + 10_000_000)
    assert cluster.show("j-1")["details"]["expiry_assumed_extended"] is True


def test_stolen_token_new_source_ip(cluster) -> None:
    jti = str(uuid.uuid4())
    cluster.feed(token_request("ci", "deployer", user="system:node:w", at=0, jti=jti, expiration_seconds=7200))
    cluster.feed(*[use(SA_USER, 10 + i, f"JTI={jti}", ip="10.0.0.5") for i in range(12)])
    stolen = cluster.feed(use(SA_USER, 100, f"JTI={jti}", ip="198.51.100.23", verb="get", resource="secrets",
                              audit_id="stolen"))
    flags = cluster.flags(jti)
    assert set(flags) == {"multiple-source-ips", "new-source-ip"}
    assert flags["new-source-ip"]["leaf_index"] == stolen[0].leaf_index
    assert flags["new-source-ip"]["auditID"] == "stolen"
    assert "198.51.100.23" in flags["new-source-ip"]["explanation"]
    e = cluster.list()[0]
    assert e["source_ips"] == ["10.0.0.5", "198.51.100.23"] and e["uses"] == 13


def test_no_jti_links_by_identity_and_prefers_the_bound_pod(cluster) -> None:
    cluster.feed(
        token_request("ci", "deployer", user="system:node:w", at=0, level="Request", expiration_seconds=3600,
                      bound={"kind": "Pod", "name": "a"}, audit_id="aaaaaaaa-1"),
        token_request("ci", "deployer", user="system:node:w", at=10, level="Request", expiration_seconds=3600,
                      bound={"kind": "Pod", "name": "b"}, audit_id="bbbbbbbb-1"),
        use(SA_USER, 20, extra={"authentication.kubernetes.io/pod-name": ["a"]}, audit_id="from-a"),
        use(SA_USER, 30, audit_id="anyone"),
    )
    by_id = {e["id"]: e for e in cluster.list()}
    a, b = by_id["token/ci/deployer/aaaaaaaa"], by_id["token/ci/deployer/bbbbbbbb"]
    assert [u["auditID"] for u in a["evidence"]["uses"]] == ["from-a"]
    assert [u["auditID"] for u in b["evidence"]["uses"]] == ["anyone"]  # the newest valid one
    assert a["evidence"]["uses"][0]["link"] == "probable" and a["probable_uses"] == 1
    assert {g["code"] for g in a["policy_gaps"]} == {"token-no-jti"}


def test_unaccounted_and_external_tokens(cluster) -> None:
    cluster.feed(use(SA_USER, 0, "JTI=ghost", groups=SA_GROUPS),
                 use("oidc:alice@example.com", 1, "JTI=idp-1", groups=["oidc:devs"]))
    by_id = {e["id"]: e for e in cluster.list(unaccounted=True)}
    ghost, idp = by_id["jti/ghost"], by_id["jti/idp-1"]
    assert ghost["kind"] == "token" and ghost["subject"] == SA_USER and ghost["uses"] == 1
    assert {f["flag"] for f in ghost["flags"]} == {"unaccounted"}
    assert ghost["policy_gaps"][0]["code"] == "token-issuance-not-seen"
    assert idp["flags"] == [] and idp["policy_gaps"][0]["code"] == "external-token"
    # the TokenRequest read later (out of order) accounts for it under the same id
    cluster.feed(token_request("ci", "deployer", user="bob", at=-5, jti="ghost"))
    ghost = {e["id"]: e for e in cluster.list()}["jti/ghost"]
    assert not ghost["unaccounted"] and ghost["created_by"] == "bob" and ghost["uses"] == 1


def test_cluster_admin_service_account(cluster) -> None:
    crb = {"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
           "metadata": {"name": "ci-admin"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                         "kind": "ClusterRole", "name": "cluster-admin"},
           "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}]}
    cluster.feed(token_request("ci", "deployer", user="alice", at=0, jti="j-admin"))
    assert set(cluster.flags("j-admin")) == {"minted-for-another"}  # a fact: alice is not the service account
    bound = cluster.feed(event(verb="create", resource="clusterrolebindings", api_group="rbac.authorization.k8s.io",
                               name="ci-admin", at=5, user="alice", level="RequestResponse", request=crb,
                               response=crb, code=201))
    flag = cluster.flags("j-admin")["cluster-admin-sa"]
    assert flag["leaf_index"] == bound[0].leaf_index and "ClusterRoleBinding/ci-admin" in flag["explanation"]
    # tokens minted after the binding are flagged at creation
    cluster.feed(token_request("ci", "deployer", user="alice", at=10, jti="j-later"))
    assert "cluster-admin-sa" in cluster.flags("j-later")
    # and after the binding is deleted, new tokens are not
    cluster.feed(event(verb="delete", resource="clusterrolebindings", api_group="rbac.authorization.k8s.io",
                       name="ci-admin", at=20, user="alice"),
                 token_request("ci", "deployer", user="alice", at=30, jti="j-after"))
    assert set(cluster.flags("j-after")) == {"minted-for-another"}


def test_denied_token_request_is_no_credential(cluster) -> None:
    ev = token_request("ci", "deployer", user="eve", at=0, jti="nope")
    ev["responseStatus"] = {"code": 403}
    cluster.feed(ev)
    assert cluster.list() == []


def test_deleting_the_bound_pod_or_the_service_account_revokes(cluster) -> None:
    cluster.feed(token_request("ci", "deployer", user="system:node:w", at=0, jti="pod-a", level="Request",
                               bound={"kind": "Pod", "name": "web-0"}),
                 token_request("ci", "deployer", user="alice", at=1, jti="plain", level="Request"),
                 event(verb="delete", resource="pods", namespace="ci", name="web-0", at=10, user="bob"),
                 token_request("ci", "deployer", user="system:node:w", at=20, jti="pod-b", level="Request",
                               bound={"kind": "Pod", "name": "web-0"}))  # the new pod with the same name
    states = {e["id"]: e["state"] for e in cluster.list()}
    assert states == {"jti/pod-a": "revoked", "jti/plain": "active", "jti/pod-b": "active"}
    assert cluster.show("pod-a")["chain"][-1]["action"] == "bound-object-deleted"
    cluster.feed(event(verb="delete", resource="serviceaccounts", namespace="ci", name="deployer", at=30, user="bob"))
    assert {e["state"] for e in cluster.list()} == {"revoked"}
    # later requests by that name belong to none of them
    cluster.feed(use(SA_USER, 40))
    assert sum(e["uses"] for e in cluster.list()) == 0
