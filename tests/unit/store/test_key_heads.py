"""The integer heads of the key and the auditID (store/heads.py, migration 0016): duplicates still
refused, two keys with one head both stored and found, and a doctored head caught by the deep check."""

from __future__ import annotations

import pytest

from kubetrail.record import Decoded, Record, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.store import open_store
from kubetrail.store.heads import audit_head, key_head, prefix_range
from kubetrail.store.queries import QueryFilters
from kubetrail.store.testing import execute as sql
from kubetrail.testing import make_event

HEAD = "abcdef012345678"  # 15 hex digits: the whole head
K1, K2 = HEAD + "0" * 49, HEAD + "1" * 49  # two keys, one head


def rec(i: int, key: str | None = None, audit_id: str | None = None) -> Record:
    r = to_record(Decoded(make_event(audit_id or f"{i:08d}-heads", name=f"o-{i}"), "event", f"h:{i}"), SourceRef(stream="h"))
    if key is not None:
        r.key = key
    return r


def test_heads() -> None:
    assert key_head(K1) == key_head(K2) == int(HEAD, 16) < 1 << 60
    assert key_head("log-1") >= 1 << 60 and key_head("log-1") != key_head("log-2") and key_head("") >= 1 << 60
    assert audit_head("") is None and audit_head("a") != audit_head("b")
    assert 0 <= audit_head("ünï\u2028") < 1 << 60  # type: ignore[operator]
    low, high = prefix_range("abc")  # type: ignore[misc]
    assert low == key_head("abc" + "0" * 61) and high == key_head("abc" + "f" * 61)
    assert prefix_range(K1) == (key_head(K1), key_head(K1)) and prefix_range("ABC") is None
    assert prefix_range("") is None and prefix_range("log-") is None


def test_the_audit_head_is_60_bits_of_the_md5_whichever_md5_the_build_has() -> None:
    """PostgreSQL's migration computes it with ``md5()``: CPython's own MD5 and OpenSSL's must agree."""
    import hashlib

    from kubetrail.store import heads

    for text in ("0a1b2c3d-1234-5678-9abc-def012345678", "a", "ünï\u2028", "x" * 300):
        want = int.from_bytes(hashlib.md5(text.encode(), usedforsecurity=False).digest()[:8], "big") >> 4
        assert audit_head(text) == want
    assert heads._plain_md5()(b"kubetrail").digest() == hashlib.md5(b"kubetrail", usedforsecurity=False).digest()


def stored_heads(store) -> dict[str, int | None]:  # type: ignore[no-untyped-def]
    return {k: h for k, h in sql(store, "SELECT key, key_head FROM entries")}


@pytest.mark.parametrize("together", [False, True], ids=["apart", "one-batch"])
def test_two_keys_with_one_head_are_both_stored_and_found(store_url: str, together: bool) -> None:
    with open_store(store_url) as store:
        first, second, other = rec(1, K1), rec(2, K2), rec(3)
        if together:
            assert len(store.append([first, second, other]).stored) == 3
        else:
            assert len(store.append([first]).stored) == 1
            assert len(store.append([second, other]).stored) == 2
        for again in ([rec(2, K2)], [rec(1, K1)], [rec(1, K1), rec(2, K2), rec(3)]):
            result = store.append(again)
            assert not result.stored and result.duplicates == len(again)
        assert store.size() == 3
        for r in (first, second, other):
            got = store.get(r.key)
            assert got is not None and got.leaf_index == r.leaf_index
        assert sorted(r.key for r in store.query(QueryFilters(key_prefix=HEAD[:10], any_kind=True))) == [K1, K2]
        assert [r.key for r in store.query(QueryFilters(key_prefix=K2[:20], any_kind=True))] == [K2]
        heads = stored_heads(store)
        assert heads[other.key] == key_head(other.key) and heads[K1] == int(HEAD, 16)
        if store_url.startswith("sqlite"):  # SQLite's head index is UNIQUE: the second key has none
            assert heads[K2] is None
        assert store.deep_check() == []


def test_lookups_by_audit_id_compare_the_audit_id(store_url: str) -> None:
    with open_store(store_url) as store:
        store.append([rec(i, audit_id=f"id-{i % 3}") for i in range(6)])  # each auditID twice, one stage
        shared = store.keys.by_audit_id(["id-0", "id-1", "absent", ""])
        assert sorted((r.audit_id, r.leaf_index) for r in shared) == [("id-0", 0), ("id-0", 3), ("id-1", 1), ("id-1", 4)]
        assert [r.leaf_index for r in store.query(QueryFilters(audit_id=["id-2"]))] == [2, 5]


def test_the_reuse_read_compares_the_audit_id_behind_a_shared_head(store_url: str) -> None:
    """Records of another auditID under the same head (60 bits of MD5: forced here) are not returned."""
    with open_store(store_url) as store:
        store.append([rec(0, audit_id="a"), rec(1, audit_id="a"), rec(2, audit_id="b"), rec(3, audit_id="c")])
        sql(store, "UPDATE entries SET audit_head = (SELECT audit_head FROM entries WHERE leaf_index = 0) "
                   "WHERE audit_id = 'b'")
        assert sorted((r.audit_id, r.leaf_index) for r in store.keys.by_audit_id(["a", "c"])) == [("a", 0), ("a", 1)]
        assert store.keys.by_audit_id(["c"]) == []


@pytest.mark.parametrize("doctor, what", [
    ("UPDATE entries SET key_head = key_head + 1 WHERE leaf_index = 1", "its key head is not its key's"),
    ("UPDATE entries SET key_head = NULL WHERE leaf_index = 1", "no other entry holds the key's head"),
    ("UPDATE entries SET audit_head = audit_head - 1 WHERE leaf_index = 1", "its auditID head is not its auditID's"),
    ("UPDATE entries SET audit_head = NULL WHERE leaf_index = 1", "its auditID head is not its auditID's"),
])
def test_the_deep_check_finds_a_doctored_head(store_url: str, doctor: str, what: str) -> None:
    with open_store(store_url) as store:
        store.append([rec(i) for i in range(3)])
        assert store.deep_check() == []
        sql(store, doctor)
        problems = store.deep_check()
        assert [(p.index, p.reason) for p in problems] == [(1, "modified")], problems
        assert what in problems[0].detail
