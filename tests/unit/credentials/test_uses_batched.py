"""Uses received after a credential's newest are queued and written in one statement at the ledger's
flush (credentials/ledger.py); an older or repeated request is looked up in the queue, then asked of the
database by its key, and queued when new — the queue is never written in pieces. The answers are the
ones of one statement per use: counts, codes, late requests, merges and a rolled-back step."""

from __future__ import annotations

from typing import Any

import pytest
from cred_helpers import Cluster, use
from test_uses_storage import KEY, stage

from kubetrail.store.credentials import CredentialTables
from kubetrail.store.testing import execute as sql

IDENT = KEY.removeprefix("X509SHA256=")


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many uses were asked of the database one by one (``has_use``), how many went in by
    ``add_uses`` and in how many calls."""
    counts = {"asked": 0, "batched": 0, "writes": 0}
    ask, many = CredentialTables.has_use, CredentialTables.add_uses

    def has_use(self: CredentialTables, cred_id: str, received: int, request: str) -> bool:
        counts["asked"] += 1
        return ask(self, cred_id, received, request)

    def add_uses(self: CredentialTables, rows: Any) -> None:
        counts["batched"] += len(rows)
        counts["writes"] += 1
        many(self, rows)

    monkeypatch.setattr(CredentialTables, "has_use", has_use)
    monkeypatch.setattr(CredentialTables, "add_uses", add_uses)
    return counts


def stored_uses(c: Cluster) -> int:
    return int(sql(c.store, "SELECT COUNT(*) FROM credential_uses").fetchone()[0])


def test_in_order_uses_go_in_together_and_the_database_answers_the_rest(cluster: Cluster,
                                                                        statements: dict[str, int]) -> None:
    n = 80  # over COPY_MIN_ROWS: on PostgreSQL the queue goes in by COPY (store/postgres.py)
    evs = [use("alice", 10 + i, KEY, audit_id=f"r{i}") for i in range(n)]
    cluster.feed(*(stage(ev, "RequestReceived", 10 + i, None) for i, ev in enumerate(evs)))  # no code yet
    assert statements == {"asked": 0, "batched": n, "writes": 1}
    assert stored_uses(cluster) == n and cluster.show(IDENT)["uses"] == n
    # the later stages of two requests already stored: the same uses, their codes filled in
    cluster.feed(stage(evs[3], "ResponseComplete", 13.5, 403), stage(evs[40], "ResponseComplete", 50.5, 401))
    assert statements["asked"] == 2 and stored_uses(cluster) == n
    shown = cluster.show(IDENT)
    assert shown["uses"] == n and shown["denied"] == 2
    # a request received before the newest, arriving late: asked, and new
    cluster.feed(use("alice", 5, KEY, audit_id="early"))
    assert statements["asked"] == 3 and stored_uses(cluster) == n + 1
    assert cluster.show(IDENT)["uses"] == n + 1
    # two stages of one new request in one batch, around an older request that is new too (received
    # before the newest, ended after it: a watch): the first stage is queued, the older request asked
    # and queued, the second stage found in the queue (its code set there); all of it written at once
    fresh = use("alice", 200, KEY, audit_id="fresh")
    writes = statements["writes"]
    cluster.feed(stage(fresh, "RequestReceived", 200, None), stage(use("alice", 55.5, KEY, audit_id="older"), "ResponseComplete", 200.2, 200),
                 stage(fresh, "ResponseComplete", 200.5, 403))
    assert statements["asked"] == 4 and statements["writes"] == writes + 1
    assert stored_uses(cluster) == n + 3
    shown = cluster.show(IDENT)
    assert shown["uses"] == n + 3 and shown["denied"] == 3
    assert sql(cluster.store, "SELECT code FROM credential_uses WHERE request = 'fresh'").fetchone()[0] == 403
    assert statements["batched"] == n + 3


def test_a_step_that_fails_writes_none_of_its_queued_uses_and_the_retry_writes_each_once(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster.feed(*(use("alice", 10 + i, KEY, audit_id=f"a{i}") for i in range(5)))
    real = CredentialTables.upsert_aggregates

    def broken(self: CredentialTables, rows: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(CredentialTables, "upsert_aggregates", broken)
    stored = cluster.store.append(cluster.records(*(use("alice", 20 + i, KEY, audit_id=f"b{i}") for i in range(5)))).stored
    with pytest.raises(RuntimeError, match="disk full"):
        cluster.consumer.consume(stored, cluster.store)
    assert stored_uses(cluster) == 5  # the queued uses were written inside the rolled-back transaction
    monkeypatch.setattr(CredentialTables, "upsert_aggregates", real)
    cluster.consumer.catch_up()
    assert stored_uses(cluster) == 10 and cluster.show(IDENT)["uses"] == 10
