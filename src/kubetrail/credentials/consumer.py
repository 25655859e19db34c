"""The pipeline consumer that keeps the credential inventory current, and ``rebuild``.

Each committed batch is applied in one transaction: creation events (inventory.py), then the use
link of every record (link.py), then the flags of every credential that changed (flags.py), then
``credential_state.next_leaf``. Because the position commits with the data, a crash replays at most
the batch in flight, and a consumer that was not running (``ingest`` of an older kubetrail, a crash
between the store's commit and ours) catches up from ``next_leaf`` on its next start. The result
depends only on the trail's order, so ``rebuild`` reproduces it exactly.

New flags raise alerts after the commit (``kubetrail.alerts.store.record_alerts``), one per
credential and flag (the alert's ``dedup_key``); a flag whose alert could not be written stays
``alerted = 0`` and is retried with the next batch.
"""

from __future__ import annotations

import time
from typing import Any

from kubetrail.catch_up import apply_in_order, catch_up
from kubetrail.credentials import flags, inventory, link
from kubetrail.credentials.ledger import Ledger
from kubetrail.record import Record
from kubetrail.store.api import Store

TAGS = {
    "privileged-group": ["T1078", "credentials"], "system-identity": ["T1078", "credentials"],
    "self-approved": ["T1098", "credentials"], "human-approval": ["T1098", "credentials"],
    "long-lived": ["T1098", "credentials"], "multiple-source-ips": ["T1550", "credentials"],
    "new-source-ip": ["T1550", "T1528", "credentials"], "legacy-token-in-use": ["T1528", "credentials"],
    "cluster-admin-sa": ["T1078", "credentials"], "unaccounted": ["T1552", "credentials"],
    "decision-conflict": ["T1098", "credentials"], "jti-collision": ["T1550", "credentials"],
    "subject-mismatch": ["T1550", "credentials"],
}


class CredentialConsumer:
    def __init__(self, store: Store, alerts: bool = True) -> None:
        self.store = store
        self.alerts = alerts
        self.ledger = Ledger(store.credentials)
        self.catch_up()

    def next_leaf(self) -> int:
        return int(self.ledger.state("next_leaf", "0"))

    def consume(self, records: list[Record], store: Store) -> None:
        apply_in_order(self.store, records, self.next_leaf, self.apply)

    def catch_up(self, until: int | None = None) -> int:
        """Apply every stored record from ``next_leaf`` to ``until`` (default: the end); returns how many."""
        return catch_up(self.store, self.next_leaf, self.apply, until)

    def apply(self, records: list[Record]) -> None:
        ledger = self.ledger
        try:
            with self.store.transaction() as tx:
                ledger.repo = tx.credentials
                start = self.next_leaf()  # re-read under the write lock: another process may have applied some
                records = [r for r in records if r.leaf_index is not None and r.leaf_index >= start]
                for r in records:
                    if r.kind != "audit":
                        continue
                    ledger.touched.clear()
                    inventory.handle(ledger, r)
                    link.link(ledger, r, self.store)
                    self._evaluate(sorted(ledger.touched))
                ledger.flush()
                if records:
                    ledger.set_state("next_leaf", str(max(r.leaf_index or 0 for r in records) + 1))
        finally:
            ledger.repo = self.store.credentials
            ledger.reset_cache()
        if self.alerts:
            self.raise_alerts()

    def _evaluate(self, cred_ids: list[str]) -> None:
        """Flags of the credentials one record changed: per record, so batching never changes a result."""
        ledger = self.ledger
        for cid in cred_ids:
            cred = ledger.get(cid)
            if cred is None:
                continue
            have = ledger.flags(cid)
            for f in flags.evaluate(cred, ledger.aggregate(cid), ledger):
                if f.flag not in have:
                    ledger.add_flag(cid, f)

    def raise_alerts(self) -> int:
        """One alert per new flag; returns how many flags were sent to the alert store."""
        try:
            from kubetrail.alerts.alert import Alert, Evidence
            from kubetrail.alerts.store import record_alerts
        except ImportError:  # the alerts package is optional for the inventory
            return 0
        rows = self.store.credentials.unalerted_flags()
        if not rows:
            return 0
        alerts = []
        for cid, flag, prio, text, t, key, audit_id, stage, leaf, kind, subject, credential_id in rows:
            alerts.append(Alert(
                rule=f"Credential risk: {flag}", priority=prio, time=t or time.time_ns(),
                subject=subject or cid, output=f"{kind} credential {cid} ({subject or 'subject unknown'}): {text}",
                fields={"credential": cid, "kind": kind, "flag": flag, "credential_id": credential_id},
                tags=TAGS.get(flag, ["credentials"]),
                evidence=[Evidence(key=key, audit_id=audit_id, stage=stage, leaf_index=leaf)] if key else [],
                origin="credentials", dedup_key=f"credentials\x1f{cid}\x1f{flag}"))
        ids = record_alerts(self.store, alerts)
        with self.store.transaction() as tx:
            tx.credentials.mark_alerted([(aid, row[0], row[1]) for aid, row in zip(ids, rows, strict=True)])
        return len(rows)

    def close(self) -> None:
        """Nothing is held open: every batch committed its own transaction."""


def rebuild(store: Store, alerts: bool = True) -> int:
    """Forget the inventory and recompute it from every stored record; returns the records read.

    Alerts already raised stay; the rebuilt flags find them by ``dedup_key`` and raise none twice.
    """
    with store.transaction() as tx:
        tx.credentials.clear()
    consumer = CredentialConsumer.__new__(CredentialConsumer)
    consumer.store, consumer.alerts, consumer.ledger = store, alerts, Ledger(store.credentials)
    return consumer.catch_up()


def credentials_consumer(store: Store, options: Any) -> CredentialConsumer:
    """The pipeline's factory (``pipeline.CONSUMERS``): alerts only when detection is on."""
    return CredentialConsumer(store, alerts=bool(getattr(options, "detect", True)))
