"""The ledger reads the stored ids of a subject, lookup or credential id once per flush (``_stored_ids``):
``by_subject`` runs for every request linked by its username, a round trip each on PostgreSQL. What was
read stays right until the flush — pending documents are added, changed ones filtered — and a flush
(which stores new rows) makes the next call read again."""

from __future__ import annotations

from typing import Any

import pytest

from kubetrail.credentials.ledger import Ledger
from kubetrail.credentials.model import Credential
from kubetrail.store import open_store
from kubetrail.store.credentials import CredentialTables


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    real = CredentialTables.ids_where

    def ids_where(self: CredentialTables, column: str, value: str) -> list[str]:
        seen.append((column, value))
        return real(self, column, value)

    monkeypatch.setattr(CredentialTables, "ids_where", ids_where)
    return seen


def _cert(cred_id: str, subject: str, lookup: str = "") -> Credential:
    return Credential(id=cred_id, kind="cert", status="issued", subject=subject, lookup=lookup)


def test_stored_ids_read_once_per_flush(store_url: str, reads: list[tuple[str, str]]) -> None:
    with open_store(store_url) as store, store.transaction() as tx:
        ledger: Any = Ledger(tx.credentials)
        assert ledger.by_subject("alice") == []
        ledger.put(_cert("csr/a1", "alice", lookup="csr:a1"))
        assert [c.id for c in ledger.by_subject("alice")] == ["csr/a1"]  # pending: from memory
        assert reads == [("subject", "alice")]
        ledger.flush()  # stored now, and no longer pending
        assert [c.id for c in ledger.by_subject("alice")] == ["csr/a1"]
        assert [c.id for c in ledger.by_subject("alice")] == ["csr/a1"]
        assert [c.id for c in ledger.by_lookup("csr:a1")] == ["csr/a1"]
        assert reads == [("subject", "alice"), ("subject", "alice"), ("lookup", "csr:a1")]

        moved = ledger.get("csr/a1")
        moved.subject = "bob"  # a stored credential's subject changes: the stored ids still say alice
        ledger.put(moved)
        assert ledger.by_subject("alice") == []
        assert [c.id for c in ledger.by_subject("bob")] == ["csr/a1"]
        ledger.flush()
        ledger.delete("csr/a1")
        assert ledger.by_subject("bob") == [] and ledger.by_lookup("csr:a1") == []
