"""How a credential's uses are kept (migration 0013): one row per request keyed by its receive time.

The stages of one request are one use whichever is seen first; the timeline is in event-time order
(not receive order) and shows the fields of the stage first seen, read from its entry; a store written
before 0013 keeps every use, with the same timeline, through the migration.
"""

from __future__ import annotations

from typing import Any

from cred_helpers import Cluster, ns_at, ts, use

from kubetrail.store import open_store
from kubetrail.store.testing import execute as sql
from kubetrail.timefmt import format_ns

KEY = "X509SHA256=" + "ab" * 32


def stage(ev: dict[str, Any], name: str, at: float, code: int | None) -> dict[str, Any]:
    """The same request at another stage: same auditID and requestReceivedTimestamp, its own time."""
    out = {**ev, "stage": name, "stageTimestamp": ts(at)}
    if code is None:
        out.pop("responseStatus", None)
    else:
        out["responseStatus"] = {"metadata": {}, "code": code}
    return out


def three_stages(at: float, audit_id: str, code: int, **kw: Any) -> list[dict[str, Any]]:
    ev = use("alice", at, KEY, audit_id=audit_id, **kw)
    return [stage(ev, "RequestReceived", at, None), stage(ev, "ResponseStarted", at + 0.5, None),
            stage(ev, "ResponseComplete", at + 1, code)]


def test_the_stages_of_one_request_are_one_use_with_the_first_stage_and_the_last_code(cluster) -> None:
    stored = cluster.feed(*three_stages(10, "req-1", 403), *three_stages(20, "req-2", 200))
    shown = cluster.show(KEY.removeprefix("X509SHA256="))
    assert shown["uses"] == 2 and shown["denied"] == 1
    first = stored[0]
    assert [(u["auditID"], u["stage"], u["leaf_index"], u["code"]) for u in shown["timeline"]] == [
        ("req-1", "RequestReceived", first.leaf_index, 403), ("req-2", "RequestReceived", stored[3].leaf_index, 200)]
    # a stage applied again later (another collector's copy) is still the same use
    cluster.feed(stage(use("alice", 10, KEY, audit_id="req-1", ip="10.9.9.9"), "ResponseComplete", 11, 403))
    again = cluster.show(KEY.removeprefix("X509SHA256="))
    assert again["uses"] == 2 and again["denied"] == 1 and again["timeline"] == shown["timeline"]
    assert sql(cluster.store, "SELECT COUNT(*) FROM credential_uses").fetchone()[0] == 2


def test_stages_arriving_last_first_count_once_too(tmp_path, store_url) -> None:
    c = Cluster(str(tmp_path / "d"), store_url)
    try:
        for i, at in enumerate((10, 20)):
            for ev in reversed(three_stages(at, f"req-{i}", 200)):  # one at a time: the earlier stages are late
                c.feed(ev)
        shown = c.show(KEY.removeprefix("X509SHA256="))
        assert shown["uses"] == 2 and shown["denied"] == 0
        assert [u["stage"] for u in shown["timeline"]] == ["ResponseComplete", "ResponseComplete"]
        assert sql(c.store, "SELECT COUNT(*) FROM credential_uses").fetchone()[0] == 2
    finally:
        c.close()


def test_the_timeline_is_in_event_time_order_with_each_stages_own_fields(cluster) -> None:
    # received first but first seen late (its ResponseComplete, 30 s later): after the one received second
    slow = use("alice", 100, KEY, audit_id="slow", verb="watch", resource="pods", namespace="shop")
    slow["stageTimestamp"] = ts(130)
    quick = use("alice", 101, KEY, audit_id="quick", verb="get", resource="pods", subresource="log",
                namespace="kube-system", name="web-1", ip="192.0.2.7", ua="curl/8.0")
    early = use("alice", 90, KEY, audit_id="early", verb="list", resource="secrets", code=401)
    stored = cluster.feed(early, slow, quick)
    shown = cluster.show(KEY.removeprefix("X509SHA256="))
    assert [u["auditID"] for u in shown["timeline"]] == ["early", "quick", "slow"]
    by_id = {u["auditID"]: u for u in shown["timeline"]}
    assert by_id["quick"] == {"time": format_ns(ns_at(101.01)), "auditID": "quick", "stage": "ResponseComplete",
                              "leaf_index": stored[2].leaf_index, "code": 200, "verb": "get",
                              "resource": "pods/log", "namespace": "kube-system", "name": "web-1",
                              "source_ip": "192.0.2.7", "user_agent": "curl/8.0", "link": "exact"}
    assert by_id["slow"]["time"] == format_ns(ns_at(130)) and by_id["slow"]["resource"] == "pods"
    assert by_id["early"]["code"] == 401 and shown["denied"] == 1
    newest = cluster.store.credentials.uses(shown["id"], 2, newest_first=True)
    assert [row[1] for row in newest] == ["slow", "quick"]


OLD_USES = """CREATE TABLE credential_uses (
    credential TEXT NOT NULL, request TEXT NOT NULL, key TEXT NOT NULL, audit_id TEXT NOT NULL,
    stage TEXT NOT NULL, leaf_index BIGINT, time BIGINT NOT NULL, code INTEGER, verb TEXT NOT NULL,
    resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, source_ip TEXT NOT NULL,
    user_agent TEXT NOT NULL, link TEXT NOT NULL, PRIMARY KEY (credential, request))"""


def as_before_0013(cluster: Cluster) -> int:
    """Rewrite the uses as kubetrail wrote them before migration 0013 (0004's table, every field copied
    from the record of the first stage seen) and forget that 0013 and 0015 ran; returns how many."""
    store = cluster.store
    rows = sql(store, "SELECT credential, request, leaf_index, time, code, link FROM credential_uses").fetchall()
    old = []
    for cred, request, leaf, t, code, link in rows:
        r = store.get(str(leaf))
        m = r.meta
        old.append((cred, request, r.key, m.audit_id, m.stage, leaf, t, code, m.verb,
                    m.resource + (f"/{m.subresource}" if m.subresource else ""), m.namespace, m.name,
                    m.source_ips[-1] if m.source_ips else "", m.user_agent, link))
    sql(store, "DROP TABLE credential_uses")
    sql(store, OLD_USES)
    sql(store, "CREATE INDEX credential_uses_time ON credential_uses (credential, time)")
    for row in old:
        sql(store, "INSERT INTO credential_uses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    sql(store, "DELETE FROM schema_migrations WHERE version IN (13, 15)")  # 0015 changes 0013's index
    return len(old)


def test_migration_0013_keeps_every_use_and_the_same_timeline(tmp_path, store_url) -> None:
    data = str(tmp_path / "d")
    c = Cluster(data, store_url)
    c.feed(*three_stages(10, "req-1", 403), *three_stages(20, "req-2", 200),
           use("alice", 30, KEY, audit_id="req-3", subresource="exec", name="web-1", ip="192.0.2.9"),
           use("bob", 40, "X509SHA256=" + "cd" * 32, audit_id="req-4"))
    before = {e["id"]: c.show(e["id"]) for e in c.list(identities=True)}
    assert sum(s["uses"] for s in before.values()) == 4
    assert as_before_0013(c) == 4
    assert sql(c.store, "SELECT COUNT(*) FROM credential_uses WHERE audit_id = 'req-1'").fetchone()[0] == 1
    c.close()

    c = Cluster(data, store_url)  # opening migrates
    try:
        assert sql(c.store, "SELECT COUNT(*) FROM schema_migrations WHERE version IN (13, 15)").fetchone()[0] == 2
        after = {e["id"]: c.show(e["id"]) for e in c.list(identities=True)}
        assert after == before
        assert sql(c.store, "SELECT COUNT(*) FROM credential_uses").fetchone()[0] == 4
        # the consumer goes on counting on the migrated rows: a new request is a new use, and the
        # timeline stays in order
        c.feed(use("alice", 50, KEY, audit_id="req-5"))
        cid = next(i for i, s in before.items() if s["credential_id"] == KEY)
        shown = c.show(cid)
        assert shown["uses"] == before[cid]["uses"] + 1
        assert [u["auditID"] for u in shown["timeline"]] == ["req-1", "req-2", "req-3", "req-5"]
    finally:
        c.close()
    with open_store(store_url, data_dir=data) as s:  # and again: nothing left to migrate
        assert s.credentials.uses(cid, 10)[0][1] == "req-1"


def test_the_timeline_reads_the_key_in_order_and_merges_the_outliers(tmp_path, store_url) -> None:
    """Many uses (several pages of the key) with latencies from 0 to minutes, and some stamped before
    they were received: the first and last N by (time, leaf index) are what sorting every use gives."""
    import random

    rng = random.Random(7)
    c = Cluster(str(tmp_path / "d"), store_url)
    try:
        events = []
        for i in range(1300):
            at = i * 0.05 + rng.random() * 0.04
            ev = use("alice", at, KEY, audit_id=f"r{i:05d}")
            lat = rng.choice([0.001, 0.01, 0.2, 1.9, 2.1, 45.0, 300.0, -0.5]) if i % 7 == 0 else rng.random() * 0.05
            ev["stageTimestamp"] = ts(at + lat)
            events.append(ev)
        rng.shuffle(events)
        for i in range(0, len(events), 100):
            c.feed(*events[i:i + 100])
        repo = c.store.credentials
        cid = c.show(KEY.removeprefix("X509SHA256="))["id"]
        every = sql(c.store, "SELECT time, leaf_index FROM credential_uses WHERE credential = ?", (cid,)).fetchall()
        assert len(every) == 1300
        ordered = sorted((int(t), int(li)) for t, li in every)
        n_out = sql(c.store, "SELECT COUNT(*) FROM credential_uses WHERE credential = ? AND "
                             "((time < received) OR (time > (received + 2000000000)))", (cid,)).fetchone()[0]
        assert 20 < n_out < 200  # both kinds of use are there
        for limit in (1, 5, 200, 511, 512, 513, 1299, 1300, 5000):
            got = [(u[0], u[3]) for u in repo.uses(cid, limit)]
            assert got == ordered[:limit], limit
            got = [(u[0], u[3]) for u in repo.uses(cid, limit, newest_first=True)]
            assert got == ordered[::-1][:limit], limit
    finally:
        c.close()
