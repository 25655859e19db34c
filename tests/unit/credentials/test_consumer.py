"""State survives restarts, catches up, rebuilds identically, and raises one alert per credential+flag."""

from __future__ import annotations

from cred_helpers import CA, csr_approve, csr_create, csr_issue, der_sha256, make_csr, token_request, use

from kubetrail.alerts.store import list_alerts
from kubetrail.credentials.consumer import CredentialConsumer, rebuild
from kubetrail.store.sqlite import Store
from kubetrail.store.testing import execute as sql


def scenario() -> list[dict]:
    ca = CA()
    csr = make_csr("root", ("system:masters",))
    cert = ca.sign(csr, days=800)
    fp = der_sha256(cert)
    return [
        csr_create(csr, user="mallory", groups=["system:authenticated"], at=0, name="evil", generate=False,
                   signer="example.com/any"),
        csr_approve("evil", user="mallory", at=5),
        csr_issue("evil", cert, at=10),
        token_request("ci", "deployer", user="alice", at=12, jti="j1"),
        *[use("root", 20 + i, f"X509SHA256={fp}", ip="10.0.0.1") for i in range(3)],
        use("root", 40, f"X509SHA256={fp}", ip="192.0.2.1"),
        use("system:serviceaccount:ci:deployer", 50, "JTI=j1"),
        use("kube-scheduler", 60, "X509SHA256=" + "cd" * 32),
    ]


def snapshot(store: Store) -> list[tuple]:
    rows = []
    for table, order in (("credentials", "id"), ("credential_aggregates", "credential"),
                         ("credential_uses", "credential, request"), ("credential_flags", "credential, flag")):
        cols = "*" if table != "credentials" else "id, kind, credential_id, subject, lookup, accounted, doc"
        if table == "credential_flags":
            cols = "credential, flag, priority, explanation, time, key, leaf_index"
        rows.append(sql(store, f"SELECT {cols} FROM {table} ORDER BY {order}").fetchall())
    return rows


def test_alerts_once_per_credential_and_flag_with_leaf_indexes(cluster) -> None:
    cluster.feed(*scenario())
    alerts = [a for a in list_alerts(cluster.store) if a.origin == "credentials"]
    by_rule = {(a.fields["credential"], a.fields["flag"]): a for a in alerts}
    assert len(by_rule) == len(alerts)
    every = {(e["id"], f["flag"]): f for e in cluster.list(identities=True) for f in e["flags"]}
    flags = {k: f for k, f in every.items() if f["class"] == "attack"}
    facts = {k: f for k, f in every.items() if f["class"] == "fact"}
    assert set(by_rule) == set(flags)  # attacks in progress alert; standing facts stay in the inventory
    assert {k[1] for k in facts} >= {"long-lived", "multiple-source-ips"} and not set(facts) & set(by_rule)
    assert all(f["alert_id"] is None for f in facts.values())
    crit = by_rule[("csr/evil", "privileged-group")]
    assert crit.priority == "Critical" and crit.subject == "root"
    assert [ev.leaf_index for ev in crit.evidence] == [flags[("csr/evil", "privileged-group")]["leaf_index"]]
    assert all(f["alert_id"] is not None for f in flags.values())
    # more of the same use raises nothing new
    n = len(alerts)
    cluster.feed(use("root", 70, cluster.show("csr/evil")["credential_id"], ip="192.0.2.1"))
    assert len([a for a in list_alerts(cluster.store) if a.origin == "credentials"]) == n


def test_restart_and_catch_up(tmp_path) -> None:
    from cred_helpers import Cluster

    a = Cluster(str(tmp_path / "a"))
    a.feed(*scenario()[:6])
    a.feed(*scenario()[6:], consume=False)  # stored, but the consumer "crashed" before it ran
    a.close()
    store = Store.open(str(tmp_path / "a"))
    consumer = CredentialConsumer(store, lateness_secs=0)  # a new process: catches up from next_leaf
    assert consumer.next_leaf() == store.size()
    assert {e for (e,) in sql(store, "SELECT id FROM credentials")} >= {"csr/evil", "jti/j1"}
    before = snapshot(store)
    # re-delivering records it already has changes nothing
    consumer.consume(list(store.records_by_index(0, store.size())), store)
    assert snapshot(store) == before
    store.close()


def test_rebuild_reproduces_the_incremental_inventory(cluster) -> None:
    events = scenario()
    for ev in events:  # one batch per event, as a live source would deliver them
        cluster.feed(ev)
    incremental = snapshot(cluster.store)
    alerts_before = len(list_alerts(cluster.store))
    read = rebuild(cluster.store)
    assert read == cluster.store.size()
    assert snapshot(cluster.store) == incremental
    assert len(list_alerts(cluster.store)) == alerts_before  # no alert twice


def test_flags_without_alerts_package_stay_pending(cluster, monkeypatch) -> None:
    cluster.consumer.alerts = False
    cluster.feed(*scenario())
    pending = sql(cluster.store, "SELECT COUNT(*) FROM credential_flags WHERE alerted = 0").fetchone()[0]
    assert pending > 0
    cluster.consumer.alerts = True
    assert cluster.consumer.raise_alerts() == pending
    assert sql(cluster.store, "SELECT COUNT(*) FROM credential_flags WHERE alerted = 0").fetchone()[0] == 0
