"""The store on both engines (``store_url``: SQLite and a real PostgreSQL): contiguous leaf indexes,
refusal of known keys, atomic positions, queries, schema versions."""

from __future__ import annotations

import pytest

from kubetrail.errors import StoreError, StoreVersionError
from kubetrail.record import Decoded, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.store import open_store
from kubetrail.store.queries import QueryFilters
from kubetrail.store.testing import execute as sql
from kubetrail.testing import make_event
from kubetrail.timefmt import parse_when


def rec(i: int, **kw: object):
    return to_record(Decoded(make_event(f"id-{i}", **kw), "event", f"t:{i}"), SourceRef(stream="t"))


def test_leaf_indexes_are_contiguous_and_duplicates_refused(store_url: str) -> None:
    """Known keys (in the store or twice in a batch) are counted, never stored again."""
    s = open_store(store_url)
    r1 = s.append([rec(1), rec(2), rec(2)])
    assert [r.leaf_index for r in r1.stored] == [0, 1] and r1.duplicates == 1
    r2 = s.append([rec(2), rec(3)])
    assert [r.leaf_index for r in r2.stored] == [2] and r2.duplicates == 1
    assert s.size() == 3 and s.counters() == {"stored": 3, "duplicates": 2}
    s.close()


def test_a_batch_with_a_stored_key_in_the_middle_keeps_leaves_contiguous(store_url: str) -> None:
    """SQLite inserts a batch before looking its keys up (the UNIQUE index answers): a stored key in
    the middle of a batch must still leave exactly the new records, contiguous, the known one unnumbered,
    and the next new batch (inserted at once again) continues the numbering."""
    s = open_store(store_url)
    s.append([rec(i) for i in range(3)])
    batch = [rec(10), rec(11), rec(1), rec(12)]
    res = s.append(batch)
    assert [(r.key, r.leaf_index) for r in res.stored] == [(batch[i].key, 3 + i) for i in (0, 1)] + [(batch[3].key, 5)]
    assert batch[2].leaf_index is None and res.duplicates == 1
    again = s.append([rec(10), rec(11)])  # a replay: nothing new
    assert again.stored == [] and again.duplicates == 2
    nxt = s.append([rec(20), rec(21)])
    assert [r.leaf_index for r in nxt.stored] == [6, 7]
    assert s.size() == 8 and s.counters() == {"stored": 8, "duplicates": 3}
    assert [k for (k,) in sql(s, "SELECT key FROM entries ORDER BY leaf_index")] == [
        *(rec(i).key for i in (0, 1, 2, 10, 11, 12, 20, 21))]
    s.close()


def test_same_audit_id_different_content_is_a_new_record(store_url: str) -> None:
    """A client-chosen Audit-ID cannot suppress another event as a duplicate."""
    s = open_store(store_url)
    a = rec(1, verb="get")
    b = rec(1, verb="delete")
    assert a.meta.audit_id == b.meta.audit_id
    assert len(s.append([a, b]).stored) == 2
    s.close()


def test_positions_commit_with_the_batch(store_url: str) -> None:
    """A failed append leaves neither records nor the position behind."""
    s = open_store(store_url)
    s.append([rec(1)], {"src": "p1"})

    def boom(tx: object, records: list) -> None:
        raise RuntimeError("hook failed")

    s.append_hooks.append(boom)
    with pytest.raises(RuntimeError):
        s.append([rec(2)], {"src": "p2"})
    assert s.position("src") == "p1" and s.size() == 1
    s.append_hooks.clear()
    assert [r.leaf_index for r in s.append([rec(2)], {"src": "p2"}).stored] == [1]
    s.close()


def test_reopen_and_query_filters(store_url: str) -> None:
    """Every filter narrows; groups and source IPs match any element."""
    s = open_store(store_url)
    s.append([
        rec(1, user="alice", groups=["dev"], verb="list", resource="secrets", namespace="", code=200,
            source_ips=["1.1.1.1", "10.0.0.9"], time="2024-05-01T10:00:00Z"),
        rec(2, user="bob", groups=["ops", "system:masters"], verb="create", resource="pods", subresource="exec",
            name="web", code=403, time="2024-05-01T11:00:00Z", userAgent="curl/8.0"),
        rec(3, user="alice", verb="get", resource="pods", name="web", time="2024-05-01T12:00:00Z"),
    ])
    s.close()
    s = open_store(store_url, create=False)

    def ids(**kw: object) -> list[str]:
        return [r.meta.audit_id for r in s.query(QueryFilters(**kw))]

    assert ids(user=["alice"]) == ["id-1", "id-3"]
    assert ids(group=["system:masters"]) == ["id-2"]
    assert ids(verb=["create"], subresource=["exec"]) == ["id-2"]
    assert ids(resource=["pods"], name=["web"]) == ["id-2", "id-3"]
    assert ids(code=[403]) == ["id-2"]
    assert ids(source_ip=["10.0.0.9"]) == ["id-1"]
    assert ids(user_agent="CURL") == ["id-2"]
    assert ids(user=["al*"]) == ["id-1", "id-3"] and ids(name=["w?b"]) == ["id-2", "id-3"]  # GLOB on both engines
    assert ids(user=["[ab]*"], exclude_user=["b*"]) == ["id-1", "id-3"] and ids(user=["AL*"]) == []
    assert ids(since=parse_when("2024-05-01T10:30:00Z"), until=parse_when("2024-05-01T11:30:00Z")) == ["id-2"]
    assert s.count_matching(QueryFilters(user=["alice"])) == 2
    got = s.get(ids(code=[403])[0] and next(s.query(QueryFilters(code=[403]))).key)
    assert got is not None and got.event()["user"]["username"] == "bob"
    assert s.get("1") is not None and s.get("nope") is None
    s.close()


def test_missing_store_and_newer_schema_are_clear_errors(store_url: str) -> None:
    with pytest.raises(StoreError, match="no kubetrail store"):
        open_store(store_url, create=False)
    with pytest.raises(StoreError, match="no kubetrail store"):
        open_store(store_url, readonly=True)
    s = open_store(store_url)
    sql(s, "INSERT INTO schema_migrations VALUES (9999, 'future.sql')")
    s.close()
    with pytest.raises(StoreVersionError):
        open_store(store_url)
    with pytest.raises(StoreVersionError):
        open_store(store_url, readonly=True)


def test_source_ref_round_trips_through_its_label() -> None:
    """Stored records give back the cluster, node and stream they were read from, paths included."""
    from kubetrail.record import SourceRef

    for ref in (SourceRef(cluster="prod", node="cp-1", stream="audit-file:/var/log/kubernetes/audit.log"),
                SourceRef(cluster="prod", stream="audit-file:/var/log/audit.log"),
                SourceRef(cluster="prod", stream="audit-webhook:kube-apiserver"),
                SourceRef(stream="file:/tmp/a/b.log"),
                SourceRef(cluster="demo", node="demo-control-plane", stream="audit-file")):
        assert SourceRef.parse(ref.label()) == ref
