"""Stateful detectors: first-seen with learning, bursts, sequences, silence, state kept across restarts."""

from __future__ import annotations

from typing import Any

from kubetrail.alerts.config import StatefulConfig
from kubetrail.detect.stateful.first_seen import FirstSeen
from kubetrail.detect.stateful.rate import DeleteBurst, DeniedBurst, DiscoveryBurst, SecretReadBurst
from kubetrail.detect.stateful.sequence import CsrSelfApproval, RbacThenWorkload
from kubetrail.detect.stateful.silence import AuditSilence
from kubetrail.detect.stateful.state import StateStore
from kubetrail.record import AuditMeta, Record, SourceRef
from kubetrail.store.sqlite import Store

S = 10**9
CFG = StatefulConfig(learning_secs=60, silence_secs=300, denied_burst=3, discovery_kinds=3, delete_burst=3,
                     secrets_read=3)
_n = 0


def rec(t: float, stream: str = "a", **meta: Any) -> Record:
    global _n
    _n += 1
    meta.setdefault("user", "alice")
    meta.setdefault("stage", "ResponseComplete")
    meta.setdefault("audit_id", f"id{_n}")
    return Record(kind="audit", key=f"k{_n}", time=int(t * S), source=SourceRef(stream=stream), body=b"{}",
                  meta=AuditMeta(**meta), leaf_index=_n)


def test_first_seen_learns_then_alerts_and_survives_restart(data_dir: str) -> None:
    store = Store.open(data_dir)
    state = StateStore(store)
    d = FirstSeen(state, CFG)
    assert d.observe(rec(0, source_ips=["10.0.0.1"], user_agent="kubectl/v1")) == []
    assert d.observe(rec(10, source_ips=["10.0.0.2"])) == []  # still learning
    state.flush()
    d2 = FirstSeen(StateStore(store), CFG)  # restart: same baseline, same learning start
    assert d2.observe(rec(100, source_ips=["10.0.0.2"], user_agent="kubectl/v2")) == []
    [a] = d2.observe(rec(120, source_ips=["203.0.113.5"], user_agent="kubectl/v1"))
    assert a.rule == "K8s Identity Used From New Source IP" and a.evidence[0].leaf_index is not None
    [ua] = d2.observe(rec(130, source_ips=["10.0.0.1"], user_agent="curl/8"))
    assert ua.rule == "K8s Identity Used With New User Agent"


def test_first_seen_skips_system_identities() -> None:
    d = FirstSeen(StateStore(None), CFG)
    d.observe(rec(0, user="system:node:n1", source_ips=["10.0.0.1"]))
    assert d.observe(rec(100, user="system:node:n1", source_ips=["1.2.3.4"])) == []


def test_credential_from_second_ip() -> None:
    d = FirstSeen(StateStore(None), CFG)
    d.observe(rec(0, credential_id="JTI=abc", source_ips=["10.0.0.1"]))
    alerts = d.observe(rec(100, credential_id="JTI=abc", source_ips=["10.9.9.9"]))
    assert "K8s Credential Used From Another Source IP" in [a.rule for a in alerts]


def test_denied_burst_counts_requests_not_stages() -> None:
    d = DeniedBurst(StateStore(None), CFG)
    out = []
    for i in range(2):
        out += d.observe(rec(i, code=403, audit_id="same", source_ips=["1.1.1.1"]))
    assert out == []
    for i in range(2):
        out += d.observe(rec(5 + i, code=403, source_ips=["1.1.1.1"]))
    assert {a.fields["by"] for a in out} == {"ip", "user"}
    assert all(len(a.evidence) == 3 for a in out)
    assert d.observe(rec(8, code=403, source_ips=["1.1.1.1"])) == []  # cool-down


def test_discovery_delete_and_secret_bursts() -> None:
    st = StateStore(None)
    disc, dele, sec = DiscoveryBurst(st, CFG), DeleteBurst(st, CFG), SecretReadBurst(st, CFG)
    out = [a for i, r in enumerate(["pods", "secrets", "nodes"]) for a in disc.observe(rec(i, verb="list", resource=r))]
    assert [a.rule for a in out] == ["K8s Multi-Resource Discovery Burst"]
    out = [a for i in range(3) for a in dele.observe(rec(i, verb="delete", resource="deployments", name=f"d{i}"))]
    assert [a.priority for a in out] == ["Critical"]
    out = [a for i in range(3) for a in sec.observe(rec(i, verb="get", resource="secrets", name=f"s{i}"))]
    assert len(out) == 1 and len(out[0].evidence) == 3
    assert disc.observe(rec(100, verb="list", resource="pods", user="system:kube-controller-manager")) == []


def test_csr_self_approval_and_rbac_then_workload() -> None:
    st = StateStore(None)
    csr, rbac = CsrSelfApproval(st, CFG), RbacThenWorkload(st, CFG)
    csr.observe(rec(0, verb="create", resource="certificatesigningrequests", name="c1"))
    assert csr.observe(rec(5, verb="update", resource="certificatesigningrequests", subresource="approval",
                           name="c1", user="bob")) == []
    [a] = csr.observe(rec(6, verb="update", resource="certificatesigningrequests", subresource="approval", name="c1"))
    assert len(a.evidence) == 2 and a.priority == "Critical"
    rbac.observe(rec(0, verb="create", resource="clusterrolebindings", name="b"))
    assert rbac.observe(rec(1000, verb="create", resource="pods", name="p")) == []  # too late
    rbac.observe(rec(2000, verb="create", resource="rolebindings", name="b2"))
    assert len(rbac.observe(rec(2010, verb="patch", resource="deployments", name="d"))) == 1


def test_audit_silence_by_event_time_and_wall_time() -> None:
    st = StateStore(None)
    wall = [0]
    d = AuditSilence(st, CFG, clock=lambda: wall[0])
    assert d.observe(rec(0, stream="node-a")) == []
    assert d.observe(rec(100, stream="node-a")) == []
    [gap] = d.observe(rec(1000, stream="node-a"))
    assert gap.rule == "Audit Log Silence" and len(gap.evidence) == 2 and gap.subject == "node-a"
    assert d.tick(200 * S) == []
    [live] = d.tick(400 * S)
    assert "wall clock" in live.output
    assert d.tick(800 * S) == []  # reported once until the source sends again
