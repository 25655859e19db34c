"""Client certificates through the CSR API: create → approve → sign → use, at full and reduced levels."""

from __future__ import annotations

from cred_helpers import (
    CA,
    SIGNER,
    csr_approve,
    csr_create,
    csr_issue,
    der_sha256,
    make_csr,
    ns_at,
    use,
)

from kubetrail.timefmt import format_ns

ALICE_GROUPS = ["devs", "system:authenticated"]


def test_full_lifecycle_every_field(cluster) -> None:
    ca = CA()
    csr = make_csr("alice", ("devs", "qa"), dns=("alice.example.com",), ips=("10.1.2.3",))
    cert = ca.sign(csr, days=30, at=120)
    fp = der_sha256(cert)
    created = cluster.feed(csr_create(csr, user="alice", groups=ALICE_GROUPS, at=0, name="csr-6plsz",
                                      expiration_seconds=2592000, audit_id="a-create"))
    approved = cluster.feed(csr_approve("csr-6plsz", user="bob", at=60, audit_id="a-approve",
                                        groups=["admins", "system:authenticated"]))
    issued = cluster.feed(csr_issue("csr-6plsz", cert, at=120, audit_id="a-issue", chain=[ca.cert]))
    uses = cluster.feed(*[use("alice", 200 + i, f"X509SHA256={fp}", groups=["devs", "qa", "system:authenticated"],
                              audit_id=f"a-use-{i}", code=403 if i == 2 else 200) for i in range(3)])
    # a second stage of the first request is the same use
    again = cluster.feed(use("alice", 200, f"X509SHA256={fp}", audit_id="a-use-0", stage="ResponseStarted",
                             groups=["devs", "qa", "system:authenticated"]))
    assert again and again[0].leaf_index == 6

    [e] = cluster.list()
    assert e["id"] == "csr/csr-6plsz"
    assert e["kind"] == "cert" and e["status"] == "issued" and e["state"] == "active"
    assert e["unaccounted"] is False
    assert e["subject"] == "alice" and e["groups"] == ["devs", "qa"]
    assert e["created_by"] == "alice" and e["approved_by"] == "bob" and e["denied_by"] is None
    assert e["impersonator"] is None and e["created_by_groups"] == ALICE_GROUPS
    assert e["approved_at"] == format_ns(approved[0].time)
    assert e["created_at"] == format_ns(created[0].time)
    assert e["issued_at"] == format_ns(issued[0].time)
    assert e["expires_at"] == format_ns(int(cert.not_valid_after_utc.timestamp()) * 1_000_000_000)
    assert e["fingerprint"] == fp and e["credential_id"] == f"X509SHA256={fp}"
    assert e["serial"] == format(cert.serial_number, "x")
    assert e["jti"] is None
    assert (e["uses"], e["exact_uses"], e["probable_uses"], e["denied"]) == (3, 3, 0, 1)
    assert e["first_used"] == format_ns(uses[0].time) and e["last_used"] == format_ns(uses[2].time)
    assert e["source_ips"] == ["10.0.0.1"]
    assert e["policy_gaps"] == []
    assert [f["flag"] for f in e["flags"]] == ["human-approval"]
    assert e["flags"][0]["leaf_index"] == approved[0].leaf_index and e["flags"][0]["auditID"] == "a-approve"
    assert "bob" in e["flags"][0]["explanation"]
    assert e["evidence"]["creation"] == [
        {"action": "csr-created", "auditID": "a-create", "leaf_index": 0, "link": "exact"},
        {"action": "approved", "auditID": "a-approve", "leaf_index": 1, "link": "exact"},
        {"action": "issued", "auditID": "a-issue", "leaf_index": 2, "link": "exact"},
    ]
    assert e["evidence"]["uses"] == [{"auditID": f"a-use-{i}", "leaf_index": 3 + i, "link": "exact"} for i in range(3)]

    s = cluster.show("csr/csr-6plsz")
    d = s["details"]
    assert d["signer_name"] == "kubernetes.io/kube-apiserver-client" and d["usages"] == ["client auth"]
    assert d["requested_expiration_seconds"] == 2592000 and d["generate_name"] == "csr-"
    assert d["csr_subject"] == {"cn": "alice", "orgs": ["devs", "qa"]}
    assert d["sans"] == {"dns": ["alice.example.com"], "ips": ["10.1.2.3"]}
    assert d["issuer"] == "CN=kubernetes" and d["signed_by"] == SIGNER and d["spec_username"] == "alice"
    assert [c["action"] for c in s["chain"]] == ["csr-created", "approved", "issued"]
    assert s["chain"][1]["reason"] == "KubectlApprove" and s["chain"][1]["by"] == "bob"
    assert [t["auditID"] for t in s["timeline"]] == ["a-use-0", "a-use-1", "a-use-2"]
    assert s["timeline"][2]["code"] == 403 and s["timeline"][0]["resource"] == "pods"
    assert s["usage"]["verbs"] == {"list": 3}
    # resolvable by credential id, fingerprint and a fingerprint prefix too
    for ident in (f"X509SHA256={fp}", fp, fp[:12]):
        assert cluster.show(ident)["id"] == "csr/csr-6plsz"


def test_system_masters_self_approved_long_lived_flags(cluster) -> None:
    ca = CA()
    csr = make_csr("mallory-admin", ("system:masters",))
    cert = ca.sign(csr, days=3650)
    fp = der_sha256(cert)
    cluster.feed(
        csr_create(csr, user="mallory", groups=["ops", "system:authenticated"], at=0, name="break-glass",
                   generate=False, signer="example.com/custom"),
        csr_approve("break-glass", user="mallory", at=10),
        csr_issue("break-glass", cert, at=20, user="system:serviceaccount:cert-manager:cert-manager"),
        use("mallory-admin", 30, f"X509SHA256={fp}", ip="10.0.0.7", groups=["system:masters", "system:authenticated"]),
        use("mallory-admin", 31, f"X509SHA256={fp}", ip="203.0.113.9", groups=["system:masters"]),
    )
    flags = cluster.flags("csr/break-glass")
    assert set(flags) == {"privileged-group", "self-approved", "human-approval", "long-lived", "multiple-source-ips"}
    assert flags["privileged-group"]["priority"] == "Critical"
    assert "cannot" in flags["privileged-group"]["explanation"] or "no RBAC" in flags["privileged-group"]["explanation"]
    assert flags["self-approved"]["leaf_index"] == 1
    assert "3650 days" in flags["long-lived"]["explanation"]
    assert flags["multiple-source-ips"]["leaf_index"] == 4
    assert cluster.list()[0]["id"] == "csr/break-glass"  # the riskiest first


def test_node_cn_from_a_non_node_requester(cluster) -> None:
    ca = CA()
    node_csr = make_csr("system:node:worker-1", ("system:nodes",))
    kcm_csr = make_csr("system:kube-controller-manager")
    ok_csr = make_csr("system:node:worker-2", ("system:nodes",))
    cluster.feed(
        csr_create(node_csr, user="eve", groups=["system:authenticated"], at=0, name="csr-a"),
        csr_create(kcm_csr, user="system:node:worker-3", groups=["system:nodes"], at=1, name="csr-b"),
        csr_create(ok_csr, user="system:bootstrap:abcdef", groups=["system:bootstrappers"], at=2, name="csr-c",
                   signer="kubernetes.io/kube-apiserver-client-kubelet"),
        csr_approve("csr-c", user="system:serviceaccount:kube-system:certificate-controller", at=3,
                    reason="AutoApproved"),
        csr_issue("csr-c", ca.sign(ok_csr), at=4),
    )
    assert "CN system:node:worker-1 names a node" in cluster.flags("csr/csr-a")["system-identity"]["explanation"]
    assert "compromised node" in cluster.flags("csr/csr-b")["system-identity"]["explanation"]
    assert cluster.flags("csr/csr-c") == {}


def test_impersonated_request_records_both_identities(cluster) -> None:
    csr = make_csr("carol")
    cluster.feed(csr_create(csr, user="admin", groups=["system:masters"], at=0, name="csr-imp",
                            impersonate=("carol", ["devs"])))
    e = cluster.list()[0]
    assert e["created_by"] == "carol" and e["impersonator"] == "admin" and e["status"] == "pending"
    assert e["state"] == "not-issued"


def test_denied_csr(cluster) -> None:
    csr = make_csr("dave")
    cluster.feed(csr_create(csr, user="dave", groups=ALICE_GROUPS, at=0, name="csr-d"),
                 csr_approve("csr-d", user="system:kube-controller-manager", at=5, approve=False, reason="Nope"))
    e = cluster.list()[0]
    assert e["status"] == "denied" and e["denied_by"] == "system:kube-controller-manager" and e["approved_by"] is None
    assert e["flags"] == [] and e["state"] == "not-issued"


def test_rejected_creation_is_no_credential(cluster) -> None:
    csr = make_csr("root", ("system:masters",))
    ev = csr_create(csr, user="eve", groups=ALICE_GROUPS, at=0, name="csr-x")
    ev["responseStatus"] = {"code": 403, "status": "Failure"}
    cluster.feed(ev)
    assert cluster.list() == []


def test_metadata_level_sequence_says_what_is_missing(cluster) -> None:
    ca = CA()
    csr = make_csr("erin", ("devs",))
    cert = ca.sign(csr)
    cluster.feed(
        csr_create(csr, user="erin", groups=ALICE_GROUPS, at=0, name="csr-meta", level="Metadata"),
        csr_approve("csr-meta", user="bob", at=10, level="Metadata"),
        csr_issue("csr-meta", cert, at=20, level="Metadata"),
        use("erin", 30),  # no credential id (cluster < 1.32): nothing to link by, the subject is unknown
    )
    [e] = cluster.list()
    assert e["id"].startswith("csr/?")  # the name is only in the response of a generateName create
    assert {g["code"] for g in e["policy_gaps"]} == {"csr-create-metadata", "csr-create-no-name",
                                                    "csr-approval-no-body", "csr-issue-no-body"}
    assert all("kubetrail policy lint" in g["note"] for g in e["policy_gaps"])
    assert e["created_by"] == "erin" and e["subject"] == "" and e["fingerprint"] is None
    actions = [(c["action"], c["link"]) for c in e["evidence"]["creation"]]
    assert actions == [("csr-created", "exact"), ("approval-unknown", "exact"), ("status-updated", "exact")]
    assert cluster.show(e["id"])["details"]["name_link"] == "probable"
    assert e["uses"] == 0
    # on 1.32+ the uses carry the fingerprint, which the Metadata-level issuance never showed
    cluster.feed(use("erin", 40, f"X509SHA256={der_sha256(cert)}", groups=["devs"]))
    x = cluster.list(unaccounted=True)[0]
    assert cluster.show(x["id"])["details"]["possible_issuance"] == [e["id"]]


def test_request_level_without_credential_ids_links_by_identity_and_time(cluster) -> None:
    ca = CA()
    csr = make_csr("frank", ("devs",))
    cert = ca.sign(csr, days=1, at=20)
    cluster.feed(
        use("frank", 5),  # before issuance: not this certificate
        csr_create(csr, user="frank", groups=ALICE_GROUPS, at=0, name="csr-f", level="Request", generate=False),
        csr_approve("csr-f", user="system:serviceaccount:kube-system:certificate-controller", at=10),
        csr_issue("csr-f", cert, at=20),
        use("frank", 30, audit_id="p1"),
        use("frank", 40, audit_id="p2", ip="10.9.9.9"),
        use("frank", 86400 * 2, audit_id="late"),  # after notAfter
    )
    e = cluster.list()[0]
    assert e["subject"] == "frank" and e["created_by"] == "frank"
    assert (e["uses"], e["exact_uses"], e["probable_uses"]) == (2, 0, 2)
    assert [u["auditID"] for u in e["evidence"]["uses"]] == ["p1", "p2"]
    assert all(u["link"] == "probable" for u in e["evidence"]["uses"])
    assert e["source_ips"] == ["10.0.0.1", "10.9.9.9"]


def test_use_before_issuance_is_merged_when_the_issuance_arrives(cluster) -> None:
    ca = CA()
    csr = make_csr("gina")
    cert = ca.sign(csr)
    fp = der_sha256(cert)
    cluster.feed(use("gina", 30, f"X509SHA256={fp}", audit_id="u1"))
    assert cluster.list()[0]["id"] == f"x509/{fp[:16]}" and cluster.list()[0]["unaccounted"]
    cluster.feed(csr_create(csr, user="gina", groups=ALICE_GROUPS, at=0, name="csr-g", generate=False),
                 csr_issue("csr-g", cert, at=20))
    [e] = cluster.list()
    assert e["id"] == "csr/csr-g" and not e["unaccounted"] and e["uses"] == 1
    assert e["evidence"]["uses"][0]["auditID"] == "u1"


def test_unaccounted_certificate_from_use_only(cluster) -> None:
    fp = "ab" * 32
    cluster.feed(use("kubernetes-super-admin", 0, f"X509SHA256={fp}", groups=["system:masters", "system:authenticated"]),
                 use("kubernetes-super-admin", 5, f"X509SHA256={fp}", groups=["system:masters"]))
    [e] = cluster.list(unaccounted=True)
    assert e["id"] == f"x509/{fp[:16]}" and e["kind"] == "cert" and e["fingerprint"] == fp
    assert e["subject"] == "kubernetes-super-admin" and e["groups"] == ["system:masters"]
    assert e["uses"] == 2 and e["created_by"] is None and e["expires_at"] is None
    assert {f["flag"] for f in e["flags"]} == {"privileged-group", "unaccounted"}
    assert e["policy_gaps"][0]["code"] == "cert-issuance-not-seen"


def test_csr_name_reuse_gets_a_new_id(cluster) -> None:
    a, b = make_csr("h1"), make_csr("h2")
    cluster.feed(csr_create(a, user="h", groups=ALICE_GROUPS, at=0, name="same", generate=False),
                 csr_create(b, user="h", groups=ALICE_GROUPS, at=7200, name="same", generate=False),
                 csr_approve("same", user="bob", at=7300))
    by_id = {e["id"]: e for e in cluster.list()}
    assert set(by_id) == {"csr/same", "csr/same~2"}
    assert by_id["csr/same~2"]["approved_by"] == "bob" and by_id["csr/same"]["approved_by"] is None


def test_expired_and_active_filters(cluster) -> None:
    ca = CA()
    short, long_ = make_csr("short"), make_csr("long")
    cluster.feed(csr_create(short, user="x", groups=[], at=0, name="s", generate=False),
                 csr_issue("s", ca.sign(short, days=1), at=1),
                 csr_create(long_, user="x", groups=[], at=0, name="l", generate=False),
                 csr_issue("l", ca.sign(long_, days=100), at=1))
    later = ns_at(86400 * 10)
    assert [e["id"] for e in cluster.list(state="expired", now_ns=later)] == ["csr/s"]
    assert [e["id"] for e in cluster.list(state="active", now_ns=later)] == ["csr/l"]


def test_out_of_order_files_and_every_stage(cluster) -> None:
    ca = CA()
    csr = make_csr("ivan", ("devs",))
    cert = ca.sign(csr)
    create = csr_create(csr, user="ivan", groups=ALICE_GROUPS, at=0, name="csr-i", generate=False, audit_id="c")
    received = dict(create, stage="RequestReceived")
    received.pop("responseStatus")
    received.pop("responseObject")
    approve = csr_approve("csr-i", user="bob", at=5, level="RequestResponse")
    approve["verb"] = "patch"
    approve["requestObject"] = {"status": {"conditions": [{"type": "Approved", "status": "True"}]}}
    # the approval and issuance were read before the creation (files ingested out of order)
    cluster.feed(approve, csr_issue("csr-i", cert, at=10))
    assert cluster.list()[0]["policy_gaps"][0]["code"] == "csr-create-not-seen"
    cluster.feed(received, create)
    [e] = cluster.list()
    assert e["id"] == "csr/csr-i" and e["created_by"] == "ivan" and e["approved_by"] == "bob"
    assert e["policy_gaps"] == [] and e["status"] == "issued" and e["fingerprint"] == der_sha256(cert)
    assert [c["action"] for c in e["evidence"]["creation"]] == ["csr-created", "approved", "issued"]
