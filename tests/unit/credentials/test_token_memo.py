"""``link._token_for`` remembers its answer per (JTI, requesting user) within a consumer step
(``Ledger.tokens``, issue 18 fourth pass): the inventory must be the one of looking every token up on
every use — with JTI collisions, uses by another subject, uses before the issuance (an unaccounted
token merged into the issued one), a second issuance arriving between uses of the first, revocation,
and the uses fed in one step or one by one.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from cred_helpers import Cluster, event, token_request, use

from kubetrail.credentials import link

JTI, JTI2 = "33333333-3333-3333-3333-333333333333", "44444444-4444-4444-4444-444444444444"
APP, ADMIN, OTHER = ("system:serviceaccount:default:app", "system:serviceaccount:kube-system:admin-sa",
                     "system:serviceaccount:kube-system:other")


def _events() -> list[dict[str, Any]]:
    evs: list[dict[str, Any]] = []
    t = 0.0
    for i in range(6):  # a token used before its issuance is seen: unaccounted, then merged
        evs.append(use(APP, t := t + 1, f"JTI={JTI2}", audit_id=f"early-{i}", ip=f"10.0.0.{i % 2 + 1}"))
    evs.append(token_request("default", "app", user="alice", at=(t := t + 1), jti=JTI2, level="Request"))
    evs.append(token_request("default", "app", user="alice", at=(t := t + 1), jti=JTI, level="Request"))
    for i in range(30):
        who = (APP, APP, OTHER, APP, ADMIN)[i % 5]
        evs.append(use(who, t := t + 1, f"JTI={JTI}", audit_id=f"u-{i}", ip=f"10.0.1.{i % 3 + 1}"))
        evs.append(use(APP, t := t + 0.5, f"JTI={JTI2}", audit_id=f"v-{i}"))
        if i == 12:  # the same JTI issued again, to another service account: a collision mid-stream
            evs.append(token_request("kube-system", "admin-sa", user="mallory", at=(t := t + 1), jti=JTI,
                                     level="Request"))
    evs.append(event(verb="delete", resource="serviceaccounts", namespace="default", name="app", at=(t := t + 1),
                     user="admin"))
    evs += [use(APP, t := t + 1, f"JTI={JTI}", audit_id=f"after-{i}") for i in range(4)]
    return evs


def _inventory(cluster: Cluster) -> list[dict[str, Any]]:
    out = []
    for c in cluster.list(identities=True):
        shown = cluster.show(c["id"])
        out.append({**c, "shown": shown})
    return out


@pytest.mark.parametrize("one_by_one", [False, True])
def test_remembered_token_links_are_the_looked_up_ones(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                       one_by_one: bool) -> None:
    results = []
    events = _events()  # once: the helpers draw random audit IDs
    for memo in (True, False):
        monkeypatch.setattr(link, "TOKEN_MEMO", memo)
        cluster = Cluster(str(tmp_path / f"memo-{memo}"))
        try:
            evs = copy.deepcopy(events)  # redaction works in place
            if one_by_one:
                for ev in evs:
                    cluster.feed(ev)
            else:
                cluster.feed(*evs)
            results.append(_inventory(cluster))
        finally:
            cluster.close()
    remembered, looked_up = results
    assert remembered == looked_up
    by_id = {c["id"]: c["shown"] for c in looked_up}
    assert by_id[f"jti/{JTI}"]["exact_uses"] > 0 and f"jti/{JTI}~2" in by_id  # the collision happened
    links = {t["link"] for c in looked_up for t in c["shown"].get("timeline", [])}
    assert {"exact", "mismatched"} <= links


def test_the_memo_is_used(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeat uses in one step skip the lookup (else the comparison above compares the lookup with itself)."""
    from kubetrail.credentials.ledger import Ledger

    lookups = []
    original = Ledger.all_by_credential_id
    monkeypatch.setattr(Ledger, "all_by_credential_id", lambda self, cid: lookups.append(cid) or original(self, cid))
    cluster = Cluster(str(tmp_path / "d"))
    try:
        cluster.feed(token_request("default", "app", user="alice", at=1, jti=JTI, level="Request"),
                     *[use(APP, 2 + i, f"JTI={JTI}", audit_id=f"u-{i}") for i in range(50)])
    finally:
        cluster.close()
    assert 1 <= len(lookups) <= 5
