"""The indexes behind the issue's timed queries (bench/store.py): `query --user U --since T --count`
must be answered from an index alone on both engines (migration 0011), whatever else the planner
could pick (entries_kind_time, entries_time). A plan that reads the table shows up here, long before
it shows up as seconds at a million events."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kubetrail.record import Decoded, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.store import Store, open_store
from kubetrail.store.heads import KEY_HEAD_MATCH, key_head, text_head
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


# Every CLI filter that has an index of its own (docs/storage.md, "Indexes"), with what it must use.
# The five value indexes are partial (migration 0012): a plan here shows the filter's `column <> ''`
# term lets the planner use them. Filters without an index (--verb alone, --name, --code, --stage,
# --source-ip, --user-agent, --group, --impersonated-user, --source, --cluster) narrow another index's
# rows or entries_kind_time's (every audit record, or those since --since).
CRED = "JTI=7d3c-plan"
INDEXED = [
    ("user", QueryFilters(user=["alice"]), "entries_user_kind", lambda m: m.user == "alice"),
    ("user pattern", QueryFilters(user=["system:node:*"]), "entries_user_kind", lambda m: m.user == "system:node:n1"),
    ("resource", QueryFilters(resource=["secrets"]), "entries_verb_resource", lambda m: m.resource == "secrets"),
    ("resource+verb", QueryFilters(resource=["secrets"], verb=["list"]), "entries_verb_resource",
     lambda m: m.resource == "secrets" and m.verb == "list"),
    ("namespace", QueryFilters(namespace=["kube-system"]), "entries_namespace", lambda m: m.namespace == "kube-system"),
    ("namespace pattern", QueryFilters(namespace=["kube-*"]), "entries_namespace",
     lambda m: m.namespace.startswith("kube-")),
    ("credential", QueryFilters(credential_id=[CRED]), "entries_credential", lambda m: m.credential_id == CRED),
    ("audit-id", QueryFilters(audit_id=["00000007-plan"]), "entries_audit_head",
     lambda m: m.audit_id == "00000007-plan"),
    ("since", QueryFilters(since=SINCE), "entries_kind_time", lambda m: True),
]


def fill_varied(store, n: int = 600) -> None:  # type: ignore[no-untyped-def]
    from kubetrail.record import LogMeta, Record

    src = SourceRef(cluster="c", node="n", stream="s")
    records = []
    for i in range(n):
        kw = {"user": ["system:kube-controller-manager", "alice", "system:node:n1"][i % 3],
              "time": f"2024-05-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z", "name": f"o-{i}"}
        if i % 10 == 0:
            kw.update(resource="secrets", verb="list", namespace="kube-system")
        if i % 5 == 2:
            kw.update(namespace="")  # cluster-scoped
        ev = make_event(f"{i:08d}-plan", **kw)
        if i % 10 == 1:
            ev["user"]["extra"] = {"authentication.kubernetes.io/credential-id": [CRED]}
        records.append(to_record(Decoded(ev, "event", f"p:{i}"), src))
    for i in range(n // 3):  # log lines: no auditID, user, resource or credential
        body = f"line {i}".encode()
        records.append(Record(kind="container", key=f"log-{i:06d}", time=SINCE + i, source=src, body=body,
                              format="cri", meta=LogMeta(namespace=f"ns-{i % 10}", pod="p", stream="stdout",
                                                         node=f"n{i % 10}", workload=f"Deployment/ns/web-{i % 10}")))
    store.append(records)


def query_plan(store, dialect: str, where: str, params: list) -> str:  # type: ignore[no-untyped-def,type-arg]
    select = f"SELECT * FROM entries {where} ORDER BY time, leaf_index"
    if dialect == "postgres":
        return "\n".join(r[0] for r in sql(store, f"EXPLAIN {select}", params))
    return "\n".join(str(r[-1]) for r in sql(store, f"EXPLAIN QUERY PLAN {select}", params))


@contextmanager
def planned_store(store_url: str) -> Iterator[tuple[Store, str]]:
    """A store holding ``fill_varied``'s rows and its SQL dialect; on PostgreSQL analysed and with
    table scans off (a few hundred rows: a table scan would win there, hiding a missing index)."""
    dialect = "postgres" if store_url.startswith("postgresql") else "sqlite"
    with open_store(store_url) as store:
        fill_varied(store)
        if dialect == "postgres":
            sql(store, "ANALYZE entries")
            sql(store, "SET enable_seqscan = off")
        yield store, dialect


def test_every_indexed_cli_filter_uses_its_index(store_url: str) -> None:
    with planned_store(store_url) as (store, dialect):
        audit = [r for r in store.query(QueryFilters(any_kind=True), body=False) if r.kind == "audit"]
        for what, filters, index, match in INDEXED:
            count = sum(1 for r in audit if match(r.meta) and (filters.since is None or r.time >= filters.since))
            assert count > 0, what
            where, params = where_clause(filters, dialect)
            text = query_plan(store, dialect, where, params)
            assert index in text, (what, text)
            if dialect == "sqlite":
                assert "SCAN entries\n" not in text + "\n" and not text.startswith("SCAN entries "), (what, text)
            assert store.count_matching(filters) == count, what
        # the reuse check's lookup (detect/reuse.py, KeyTables.by_audit_id) reads the auditID heads' index only
        heads = sorted(text_head(f"{i:08d}-plan") for i in range(5))
        marks = ",".join("?" * len(heads))
        select = f"SELECT audit_head FROM entries WHERE audit_head IN ({marks}) GROUP BY audit_head, stage HAVING COUNT(*) > 1"
        text = "\n".join(str(r[-1] if dialect == "sqlite" else r[0]) for r in sql(
            store, f"EXPLAIN {'QUERY PLAN ' if dialect == 'sqlite' else ''}{select}", heads))
        assert "entries_audit_head" in text, text
        if dialect == "sqlite":
            assert "COVERING INDEX entries_audit_head" in text, text
        assert [r.key for r in store.query(QueryFilters(audit_id=["00000003-plan"]))] == \
            [r.key for r in store.query(QueryFilters(any_kind=True)) if r.kind == "audit" and
             r.meta.audit_id == "00000003-plan"]


def test_lookups_by_key_and_key_prefix_use_an_index(store_url: str) -> None:
    """``show KEY``/``show PREFIX`` (Store.get, cli/resolve.py): through the key heads' index on SQLite
    (the key's text has none since migration 0016), the key's UNIQUE index on PostgreSQL."""
    index = "entries_key_key" if store_url.startswith("postgresql") else "entries_key_head"
    with planned_store(store_url) as (store, dialect):
        keys = [r.key for r in store.query(QueryFilters(any_kind=True), body=False)]
        hexed = next(k for k in keys if not k.startswith("log-"))
        for prefix in (hexed[:6], hexed[:20], hexed, "log-00001"):
            want = sorted(k for k in keys if k.startswith(prefix))
            filters = QueryFilters(key_prefix=prefix, any_kind=True)
            assert sorted(r.key for r in store.query(filters, body=False)) == want, prefix
            if prefix != "log-00001":  # not hex: no head range, the key column alone
                where, params = where_clause(filters, dialect)
                assert index in query_plan(store, dialect, where, params), prefix
        text = query_plan(store, dialect, f"WHERE {KEY_HEAD_MATCH}", [key_head(hexed), hexed])
        assert index in text, text
        for key in (hexed, "log-000007"):
            got = store.get(key)
            assert got is not None and got.key == key


def test_log_filters_use_their_indexes(store_url: str) -> None:
    from kubetrail.store.queries import LogFilters, log_where_clause

    with planned_store(store_url) as (store, dialect):
        for filters, index in ((LogFilters(workload=["Deployment/ns/web-3"]), "entries_workload"),
                               (LogFilters(node=["n3"]), "entries_node"),
                               (LogFilters(namespace=["ns-3"], since=SINCE), "entries_namespace")):
            where, params = log_where_clause(filters, dialect)
            text = query_plan(store, dialect, where, params)
            assert index in text, (filters, text)
            assert store.count_logs(filters) == 20, filters  # i % 10 == 3 of 200 log lines
