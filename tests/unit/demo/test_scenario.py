"""The demo scenario: size, determinism, realistic stages, and every attack step in the right shape."""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from kubetrail.demo.attack import ATTACKER_IP, TOKEN_IP
from kubetrail.demo.model import T0, stamp
from kubetrail.demo.policy import POLICY_YAML
from kubetrail.demo.scenario import Scenario, generate
from kubetrail.stages.redact import decode_jwt_claims

CRED = "authentication.kubernetes.io/credential-id"
ISSUED = "authentication.kubernetes.io/issued-credential-id"


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate()


def _find(events: list[dict[str, Any]], **want: Any) -> list[dict[str, Any]]:
    out = []
    for e in events:
        ref = e.get("objectRef") or {}
        fields = {"verb": e["verb"], "resource": ref.get("resource", ""), "sub": ref.get("subresource", ""),
                  "ns": ref.get("namespace", ""), "name": ref.get("name", ""), "user": e["user"].get("username", ""),
                  "stage": e["stage"], "code": e["responseStatus"]["code"]}
        if all(fields[k] == v for k, v in want.items()):
            out.append(e)
    return out


def _cred(e: dict[str, Any]) -> str:
    return ((e["user"].get("extra") or {}).get(CRED) or [""])[0]


def test_size_schema_and_window(scenario: Scenario) -> None:
    events = scenario.events
    assert len(events) >= 2000
    assert all(e["kind"] == "Event" and e["apiVersion"] == "audit.k8s.io/v1" for e in events)
    assert {e["stage"] for e in events} == {"ResponseStarted", "ResponseComplete"}  # policy omits RequestReceived
    stamps = [e["stageTimestamp"] for e in events]
    assert stamps == sorted(stamps)
    assert all(stamp(0) <= e["requestReceivedTimestamp"] <= stamp(7200) for e in events)
    assert all(e["requestReceivedTimestamp"] <= e["stageTimestamp"] for e in events)
    assert len({e["auditID"] for e in events}) > 1800
    users = Counter(e["user"].get("username", "") for e in events)
    for who in ("system:kube-controller-manager", "system:kube-scheduler", "system:node:demo-worker-1",
                "system:apiserver", "alice@example.com", "bob@example.com"):
        assert users[who] > 0, who


def test_deterministic_and_seeded(scenario: Scenario) -> None:
    assert generate().lines() == scenario.lines()
    other = generate(seed=7)
    assert other.lines() != scenario.lines()
    assert len(other.events) >= 2000


def test_size_scales_and_attack_is_stable(scenario: Scenario) -> None:
    big = generate(events=4000)
    assert 4000 <= len(big.events) <= 4600

    def attack(s: Scenario) -> list[dict[str, Any]]:
        return [e for e in s.events if set(e["sourceIPs"]) & {ATTACKER_IP, TOKEN_IP}]
    assert attack(big) == attack(scenario)
    assert big.facts.cert_credential_id == scenario.facts.cert_credential_id


def test_stages_where_apiservers_emit_them(scenario: Scenario) -> None:
    by_id: dict[str, list[str]] = {}
    for e in scenario.events:
        by_id.setdefault(e["auditID"], []).append(e["stage"])
    for e in scenario.events:
        stages = by_id[e["auditID"]]
        sub = (e.get("objectRef") or {}).get("subresource", "")
        if e["responseStatus"]["code"] == 401:
            assert stages == ["ResponseStarted"] and e["user"] == {}
        elif e["verb"] == "watch" or sub in ("exec", "log", "portforward"):
            assert stages[0] == "ResponseStarted" and set(stages) <= {"ResponseStarted", "ResponseComplete"}
        else:
            assert stages == ["ResponseComplete"]
    assert any(len(v) == 2 for v in by_id.values())


def test_levels_agree_with_the_policy(scenario: Scenario) -> None:
    policy = pytest.importorskip("kubetrail.posture.policy.model")
    match = pytest.importorskip("kubetrail.posture.policy.match")
    loaded = policy.parse_policy(POLICY_YAML)
    for e in scenario.events:
        decision = match.evaluate(loaded.policy, match.attrs_from_event(e))
        assert decision.level.wire == e["level"], e["requestURI"]
    bodies = Counter(e["level"] for e in scenario.events if "responseObject" in e)
    assert set(bodies) == {"RequestResponse"}


def test_control_plane_credentials(scenario: Scenario) -> None:
    kubelet = [e for e in scenario.events if e["user"].get("username", "").startswith("system:node:")]
    assert kubelet and all(_cred(e).startswith("X509SHA256=") and len(_cred(e)) == 75 for e in kubelet)
    sas = [e for e in scenario.events if e["user"].get("username", "").startswith("system:serviceaccount:")
           and "legacy" not in str(e.get("annotations"))]
    assert sas and all(_cred(e).startswith("JTI=") for e in sas)
    proxy = next(e for e in sas if e["user"]["username"].endswith(":kube-proxy"))
    assert {"authentication.kubernetes.io/pod-name", "authentication.kubernetes.io/node-name"} <= set(
        proxy["user"]["extra"])
    refreshes = _find(scenario.events, verb="create", resource="serviceaccounts", sub="token")
    kubelet_tr = [e for e in refreshes if e["user"]["username"].startswith("system:node:")]
    assert kubelet_tr and all(e["annotations"][ISSUED].startswith("JTI=") for e in kubelet_tr)
    used = {_cred(e) for e in sas}
    assert sum(e["annotations"][ISSUED] in used for e in kubelet_tr) > 0  # refreshed tokens get used
    worker3 = {_cred(e) for e in kubelet if e["user"]["username"] == "system:node:demo-worker-3"}
    assert scenario.kubelet_cert is not None and scenario.kubelet_cert.credential_id in worker3


def _pem_subject(b64: str) -> tuple[str, list[str]]:
    csr = x509.load_pem_x509_csr(base64.b64decode(b64))
    return (str(csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value),
            [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)])


def test_csr_created_approved_signed_used(scenario: Scenario) -> None:
    events, facts = scenario.events, scenario.facts
    [create] = _find(events, verb="create", resource="certificatesigningrequests", user="dave@example.com")
    assert create["sourceIPs"] == [ATTACKER_IP] and create["level"] == "RequestResponse"
    spec = create["requestObject"]["spec"]
    assert spec["signerName"] == "kubernetes.io/kube-apiserver-client"
    assert _pem_subject(spec["request"]) == ("evil-admin", ["system:masters"])
    assert create["responseObject"]["spec"]["username"] == "dave@example.com"
    [approve] = _find(events, resource="certificatesigningrequests", sub="approval", name=facts.csr_name)
    assert approve["user"]["username"] == "alice@example.com" and approve["verb"] == "update"
    cond = approve["requestObject"]["status"]["conditions"][0]
    assert (cond["type"], cond["reason"]) == ("Approved", "KubectlApprove")
    [sign] = _find(events, resource="certificatesigningrequests", sub="status", name=facts.csr_name)
    assert sign["user"]["username"] == "system:serviceaccount:kube-system:certificate-controller"
    pem = base64.b64decode(sign["requestObject"]["status"]["certificate"])
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert facts.cert_credential_id == "X509SHA256=" + hashlib.sha256(der).hexdigest()
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    uses = [e for e in events if _cred(e) == facts.cert_credential_id]
    assert len(uses) >= 5
    assert all(e["user"]["username"] == "evil-admin" and "system:masters" in e["user"]["groups"] for e in uses)
    assert min(e["requestReceivedTimestamp"] for e in uses) > sign["stageTimestamp"]


def test_token_request_for_cluster_admin_account_then_new_ip(scenario: Scenario) -> None:
    events, facts = scenario.events, scenario.facts
    [crb] = _find(events, verb="create", resource="clusterrolebindings", user="alice@example.com")
    assert crb["requestObject"]["roleRef"]["name"] == "cluster-admin"
    assert crb["requestObject"]["subjects"][0]["name"] == "ops-automation"
    [tr] = _find(events, verb="create", resource="serviceaccounts", sub="token", name="ops-automation")
    assert tr["annotations"][ISSUED] == f"JTI={facts.token_jti}"
    token = tr["responseObject"]["status"]["token"]
    assert token == facts.token and token.startswith("eyJ")
    assert (decode_jwt_claims(token) or {})["jti"] == facts.token_jti
    assert crb["stageTimestamp"] < tr["stageTimestamp"]
    uses = [e for e in events if _cred(e) == f"JTI={facts.token_jti}"]
    assert uses[0]["sourceIPs"] == [ATTACKER_IP]  # tried where it was minted ...
    assert len(uses) > 5 and {ip for e in uses[1:] for ip in e["sourceIPs"]} == {TOKEN_IP}  # ... then moved
    before = {ip for e in events if e["stageTimestamp"] < tr["stageTimestamp"] for ip in e["sourceIPs"]}
    assert TOKEN_IP not in before


def test_the_other_attack_steps(scenario: Scenario) -> None:
    ev = scenario.events
    [listing] = _find(ev, verb="list", resource="secrets", ns="", user="evil-admin")
    assert all(item.get("data") for item in listing["responseObject"]["items"])
    [pod] = _find(ev, verb="create", resource="pods", sub="", user="evil-admin")
    spec = pod["requestObject"]["spec"]
    assert spec["volumes"][0]["hostPath"]["path"] == "/"
    assert spec["containers"][0]["securityContext"]["privileged"] is True
    execs = _find(ev, resource="pods", sub="exec", user="evil-admin", stage="ResponseStarted")
    assert {(e["verb"], e["responseStatus"]["code"]) for e in execs} == {("get", 101), ("create", 101)}
    [binding] = _find(ev, verb="create", resource="clusterrolebindings", user="evil-admin")
    assert binding["requestObject"]["roleRef"]["name"] == "cluster-admin"
    deleted = [e for e in ev if (e.get("objectRef") or {}).get("resource") == "events"
               and e["verb"] in ("delete", "deletecollection")]
    assert {e["verb"] for e in deleted} == {"delete", "deletecollection"}
    assert len(_find(ev, code=401)) >= 3
    assert len(_find(ev, code=403, user="system:anonymous")) >= 2
    [legacy] = [e for e in _find(ev, verb="create", resource="secrets")
                if e["requestObject"].get("type") == "kubernetes.io/service-account-token"]
    filled = _find(ev, verb="update", resource="secrets", name=legacy["requestObject"]["metadata"]["name"])
    assert filled and filled[0]["requestObject"]["data"]["token"]
    assert any("authentication.k8s.io/legacy-token" in e.get("annotations", {}) for e in ev)


def test_planted_secrets_are_in_the_raw_log(scenario: Scenario) -> None:
    raw = scenario.lines()
    assert len(scenario.planted) >= 8
    for value in scenario.planted:
        assert value.encode() in raw or base64.b64encode(value.encode()) in raw, value
    assert T0.year == 2026


def test_bootstrap_token_by_kubeadm_admin(scenario: Scenario) -> None:
    [boot] = [e for e in _find(scenario.events, verb="create", resource="secrets", ns="kube-system")
              if e["requestObject"].get("type") == "bootstrap.kubernetes.io/token"]
    assert boot["user"]["username"] == "kubernetes-admin" and _cred(boot).startswith("X509SHA256=")
    assert boot["responseObject"]["metadata"]["name"] == "bootstrap-token-r8w2n5"
    assert boot["requestObject"]["data"]["token-secret"]
