"""The indexes behind the issue's timed queries (bench/store.py): `query --user U --since T --count`
must be answered from an index alone on both engines (migration 0011), whatever else the planner
could pick (entries_kind_time, entries_time). A plan that reads the table shows up here, long before
it shows up as seconds at a million events."""

from __future__ import annotations

from kubetrail.record import Decoded, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.store import open_store
from kubetrail.store.queries import QueryFilters, where_clause
from kubetrail.store.testing import execute as sql
from kubetrail.testing import make_event
from kubetrail.timefmt import parse_when

SINCE = parse_when("2024-05-01T00:05:00Z")


def fill(store, n: int = 600) -> None:  # type: ignore[no-untyped-def]
    users = ["system:kube-controller-manager", "alice", "system:node:n1"]
    src = SourceRef(cluster="c", node="n", stream="s")
    store.append([to_record(Decoded(make_event(f"{i:08d}-plan", user=users[i % 3], name=f"o-{i}",
                                               time=f"2024-05-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z"),
                                    "event", f"p:{i}"), src) for i in range(n)])


def plan(store, dialect: str) -> str:  # type: ignore[no-untyped-def]
    where, params = where_clause(QueryFilters(user=["system:kube-controller-manager"], since=SINCE), dialect)
    if dialect == "postgres":
        # as autovacuum does later: index-only scans need the visibility map, and VACUUM can mark a page
        # all-visible only once its rows' commits are on disk (the test server runs synchronous_commit=off)
        sql(store, "CHECKPOINT")
        sql(store, "VACUUM ANALYZE entries")
        return "\n".join(r[0] for r in sql(store, f"EXPLAIN SELECT COUNT(*) FROM entries {where}", params))
    return "\n".join(str(r[-1]) for r in sql(store, f"EXPLAIN QUERY PLAN SELECT COUNT(*) FROM entries {where}",
                                              params))


def test_count_by_user_since_reads_one_index(store_url: str) -> None:
    dialect = "postgres" if store_url.startswith("postgresql") else "sqlite"
    with open_store(store_url) as store:
        fill(store)
        if dialect == "postgres":
            sql(store, "SET enable_seqscan = off")  # a few hundred rows: a table scan would win here
        text = plan(store, dialect)
        assert "entries_user_kind" in text, text
        assert ("Index Only Scan" in text) if dialect == "postgres" else ("COVERING INDEX" in text), text
        assert store.count_matching(QueryFilters(user=["system:kube-controller-manager"], since=SINCE)) == 100  # i % 3 == 0, i >= 300
