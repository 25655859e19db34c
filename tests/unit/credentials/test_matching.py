"""Which CSR a decision belongs to, who really acted behind impersonation, JTI collisions, dry runs and
credential-id spelling: the cases where a wrong match would put a name on the wrong credential."""

from __future__ import annotations

from cred_helpers import (
    CA,
    CSR_GROUP,
    csr_approve,
    csr_create,
    csr_issue,
    der_sha256,
    event,
    make_csr,
    token_request,
    use,
)

G = ["system:authenticated"]
CERT_CONTROLLER = "system:serviceaccount:kube-system:certificate-controller"
JTI = "22222222-2222-2222-2222-222222222222"


def _by_id(cluster) -> dict[str, dict]:
    return {e["id"]: e for e in cluster.list()}


def test_reused_name_approval_read_before_its_creation_goes_to_the_new_csr(cluster) -> None:
    ca = CA()
    old, new = make_csr("alice"), make_csr("mallory-admin", ("kubeadm:cluster-admins",))
    cluster.feed(
        csr_create(old, user="alice", groups=G, at=0, name="dup", generate=False),
        csr_approve("dup", user="admin", at=10),
        csr_issue("dup", ca.sign(old), at=20),
        event(verb="delete", resource="certificatesigningrequests", api_group=CSR_GROUP, name="dup", at=30,
              user="admin"),
        csr_approve("dup", user="mallory", at=110),  # approves the NEW csr; read before its creation
        csr_create(new, user="mallory", groups=G, at=100, name="dup", generate=False),
    )
    by = _by_id(cluster)
    assert set(by) == {"csr/dup", "csr/dup~2"}
    assert by["csr/dup"]["created_by"] == "alice" and by["csr/dup"]["approved_by"] == "admin"
    assert by["csr/dup"]["status"] == "issued"
    assert by["csr/dup~2"]["created_by"] == "mallory" and by["csr/dup~2"]["approved_by"] == "mallory"
    assert by["csr/dup~2"]["policy_gaps"] == []
    assert "self-approved" in {f["flag"] for f in by["csr/dup~2"]["flags"]}
    assert not {f["flag"] for f in by["csr/dup"]["flags"]} & {"self-approved", "decision-conflict"}


def test_day_files_read_out_of_order_match_by_time(cluster) -> None:
    bob, eve = make_csr("bob"), make_csr("eve")
    cluster.feed(csr_create(eve, user="eve", groups=G, at=86400, name="same", generate=False),
                 csr_approve("same", user="system:kube-controller-manager", at=86410))
    cluster.feed(csr_create(bob, user="bob", groups=G, at=0, name="same", generate=False),
                 csr_approve("same", user="carol", at=10))
    by = {e["created_by"]: e for e in cluster.list()}
    assert by["eve"]["approved_by"] == "system:kube-controller-manager"
    assert by["bob"]["approved_by"] == "carol"


def test_a_second_different_decision_is_a_conflict_not_an_overwrite(cluster) -> None:
    csr = make_csr("zed")
    cluster.feed(csr_create(csr, user="zed", groups=G, at=0, name="z", generate=False),
                 csr_approve("z", user="system:kube-controller-manager", at=5),
                 csr_approve("z", user="mallory", at=6, approve=False))
    e = _by_id(cluster)["csr/z"]
    assert e["approved_by"] == "system:kube-controller-manager" and e["denied_by"] is None
    assert e["status"] == "approved"
    conflict = cluster.flags("csr/z")["decision-conflict"]
    assert "mallory" in conflict["explanation"] and conflict["leaf_index"] == 2


def test_unnamed_csrs_are_not_matched_newest_first(cluster) -> None:
    a, b = make_csr("system:node:a", ("system:nodes",)), make_csr("system:node:b", ("system:nodes",))
    kubelet = "kubernetes.io/kube-apiserver-client-kubelet"
    cluster.feed(
        csr_create(a, user="system:bootstrap:abc", groups=["system:bootstrappers"], at=0, name="csr-first",
                   level="Metadata", signer=kubelet, audit_id="aaaaaaaa-1"),
        csr_create(b, user="system:bootstrap:def", groups=["system:bootstrappers"], at=5, name="csr-second",
                   level="Metadata", signer=kubelet, audit_id="bbbbbbbb-1"),
        csr_approve("csr-first", user="system:kube-controller-manager", at=10),
        csr_approve("csr-second", user="system:kube-controller-manager", at=15),
    )
    by = {e["created_by"]: cluster.show(e["id"]) for e in cluster.list()}
    assert by["system:bootstrap:abc"]["details"]["csr_name"] == "csr-first"
    assert by["system:bootstrap:def"]["details"]["csr_name"] == "csr-second"
    assert by["system:bootstrap:abc"]["details"]["name_link"] == "probable"


def test_impersonating_a_controller_does_not_hide_self_approval(cluster) -> None:
    csr = make_csr("alice3")
    cluster.feed(csr_create(csr, user="alice3", groups=G, at=0, name="imp1", generate=False),
                 csr_approve("imp1", user="alice3", at=10, impersonate=(CERT_CONTROLLER, ["system:serviceaccounts"])))
    flags = cluster.flags("csr/imp1")
    assert "alice3" in flags["self-approved"]["explanation"]
    assert "impersonating" in flags["self-approved"]["explanation"]
    assert "impersonating" in flags["human-approval"]["explanation"]


def test_impersonating_a_node_does_not_hide_the_system_identity(cluster) -> None:
    csr = make_csr("system:node:n1", ("system:nodes",))
    cluster.feed(csr_create(csr, user="alice3", groups=G, at=0, name="imp2", generate=False,
                            signer="kubernetes.io/kube-apiserver-client-kubelet",
                            impersonate=("system:node:n1", ["system:nodes"])))
    text = cluster.flags("csr/imp2")["system-identity"]["explanation"]
    assert "alice3" in text and "impersonating system:node:n1" in text


def test_jti_collision_keeps_the_first_issuance_and_checks_the_subject(cluster) -> None:
    cluster.feed(
        token_request("default", "app", user="alice", at=10, jti=JTI, level="Request"),
        token_request("kube-system", "admin-sa", user="mallory", at=20, jti=JTI, level="Request"),
        use("system:serviceaccount:default:app", 30, f"JTI={JTI}", audit_id="ok"),
        use("system:serviceaccount:kube-system:other", 40, f"JTI={JTI}", audit_id="bad"),
    )
    first = cluster.show(f"jti/{JTI}")
    assert first["subject"] == "system:serviceaccount:default:app" and first["created_by"] == "alice"
    assert first["groups"] == ["system:serviceaccounts", "system:serviceaccounts:default"]
    assert first["exact_uses"] == 1 and [t["auditID"] for t in first["timeline"] if t["link"] == "exact"] == ["ok"]
    second = cluster.show(f"jti/{JTI}~2")
    assert second["subject"] == "system:serviceaccount:kube-system:admin-sa" and second["created_by"] == "mallory"
    assert second["exact_uses"] == 0
    for ident in (f"jti/{JTI}", f"jti/{JTI}~2"):
        assert "issued twice" in cluster.flags(ident)["jti-collision"]["explanation"]
    mismatched = [f for ident in (f"jti/{JTI}", f"jti/{JTI}~2") for f in cluster.show(ident)["flags"]
                  if f["flag"] == "subject-mismatch"]
    assert len(mismatched) == 1 and "system:serviceaccount:kube-system:other" in mismatched[0]["explanation"]


def test_one_token_request_read_twice_is_no_jti_collision(cluster) -> None:
    """Two copies of one request (same auditID; e.g. the file and the webhook with different levels)
    are one issuance: a JTI collision is an attack-class flag and must not fire on them."""
    cluster.feed(token_request("default", "app", user="alice", at=10, jti=JTI, audit_id="tr-1"),
                 token_request("default", "app", user="alice", at=10, jti=JTI, audit_id="tr-1", level="Request"),
                 use("system:serviceaccount:default:app", 30, f"JTI={JTI}", audit_id="ok"))
    assert [c["id"] for c in cluster.list() if c.get("jti") == JTI] == [f"jti/{JTI}"]
    assert "jti-collision" not in cluster.flags(f"jti/{JTI}")
    assert cluster.show(f"jti/{JTI}")["exact_uses"] == 1


def test_use_by_another_subject_is_not_an_exact_use(cluster) -> None:
    cluster.feed(token_request("default", "app", user="alice", at=10, jti=JTI, level="Request"),
                 use("system:serviceaccount:default:other", 30, f"JTI={JTI}", audit_id="bad"))
    e = cluster.show(f"jti/{JTI}")
    assert e["exact_uses"] == 0 and e["timeline"][0]["link"] == "mismatched"
    assert cluster.flags(f"jti/{JTI}")["subject-mismatch"]["auditID"] == "bad"


def test_dry_run_requests_create_no_credentials(cluster) -> None:
    csr = make_csr("alice", ("system:masters",))
    dry_csr = csr_create(csr, user="alice", groups=G, at=0, name="dry", generate=False)
    dry_csr["requestURI"] += "?dryRun=All"
    dry_token = token_request("default", "builder", user="alice", at=1, jti="1" * 8, level="Request")
    dry_token["requestURI"] += "?dryRun=All&fieldManager=kubectl"
    cluster.feed(dry_csr, dry_token)
    assert cluster.list() == []


def test_credential_ids_are_normalised(cluster) -> None:
    ca = CA()
    csr = make_csr("dave")
    cert = ca.sign(csr)
    fp = der_sha256(cert)
    cluster.feed(csr_create(csr, user="dave", groups=G, at=0, name="d1", generate=False),
                 csr_approve("d1", user="admin", at=10), csr_issue("d1", cert, at=20),
                 use("dave", 30, f"X509SHA256={fp.upper()}"), use("dave", 31, f"X509SHA256= {fp} "),
                 use("dave", 32, f"X509SHA256={fp}"),
                 token_request("default", "app", user="alice", at=40, jti=JTI, level="Request"),
                 use("system:serviceaccount:default:app", 41, f"JTI= {JTI}\t"))
    assert {e["id"] for e in cluster.list()} == {"csr/d1", f"jti/{JTI}"}
    assert cluster.show("csr/d1")["exact_uses"] == 3
    assert cluster.show(f"jti/{JTI}")["exact_uses"] == 1


def test_the_approval_request_is_not_a_use_of_the_cert_it_approves(cluster) -> None:
    ca = CA()
    csr = make_csr("frank")
    cluster.feed(csr_create(csr, user="frank", groups=G, at=0, name="f", generate=False, level="Request"),
                 csr_approve("f", user="frank", at=10),
                 use("frank", 15, audit_id="between"),  # approved, not yet issued
                 csr_issue("f", ca.sign(csr, at=20), at=20),
                 use("frank", 30, audit_id="after"))
    e = cluster.show("csr/f")
    assert [t["auditID"] for t in e["timeline"]] == ["after"]
