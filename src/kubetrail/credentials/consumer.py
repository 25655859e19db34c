"""The pipeline consumer that keeps the credential inventory current, and ``rebuild``.

Records are applied in **event-time order**, behind the same watermark as detection
(``kubetrail.ordering``; ``allowed_lateness_secs`` in ``DATA/detect.yaml``): creation, approval,
issuance, uses and flags come out the same whatever order the records arrive in, as long as each
arrives within the allowed lateness. A record later than that is applied at once (the ledger's
out-of-order handling — a creation adopting a decision or issuance read before it, an issuance
merging the uses of a certificate seen first — covers the usual cases) and counted in ``late``;
``kubetrail creds rebuild`` replays the whole trail in event-time order and gives the exact answer.

Each step is one transaction: what arrived is received (``credential_state.next_leaf``), what the
watermark releases is applied — creation events (inventory.py), then the use link of every record
(link.py), then the flags of every credential that changed (flags.py) — and the buffer's position
(``frontier``, ``pending``) is saved with it. A crash replays at most the step in flight, a restart
holds again what was held, and a consumer that was not running catches up from ``next_leaf``. The
frontier is read again under the write lock, so two processes on one store never apply a record twice.

Flags that mean an attack in progress raise alerts after the commit
(``kubetrail.alerts.store.record_alerts``), one per credential and flag (the alert's ``dedup_key``);
a flag whose alert could not be written stays ``alerted = 0`` and is retried with the next batch.
The other flags are standing facts (``alerted = 2``): the inventory lists them, nothing is paged
(flags.py says which is which). ``disable:``/``exceptions:`` of detect.yaml apply to every flag.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import orjson

from kubetrail.alerts.alert import Alert, Evidence
from kubetrail.alerts.config import DetectSettings
from kubetrail.alerts.store import record_alerts, settings_for
from kubetrail.catch_up import apply_in_order, catch_up
from kubetrail.credentials import flags, inventory, link
from kubetrail.credentials.ledger import Ledger
from kubetrail.credentials.model import encode
from kubetrail.ordering import ReorderBuffer, event_order, released, restore
from kubetrail.record import Record
from kubetrail.store.api import Store

EVALUATED_LIMIT = 50_000  # credentials whose evaluated inputs are remembered (then forgotten at once)
LATE_COUNTER = "late_credentials"  # store counter: records the inventory applied out of event-time order
_LEAF = attrgetter("leaf_index")

TAGS = {
    "privileged-group": ["T1078", "credentials"], "system-identity": ["T1078", "credentials"],
    "self-approved": ["T1098", "credentials"], "human-approval": ["T1098", "credentials"],
    "long-lived": ["T1098", "credentials"], "multiple-source-ips": ["T1550", "credentials"],
    "new-source-ip": ["T1550", "T1528", "credentials"], "legacy-token-in-use": ["T1528", "credentials"],
    "cluster-admin-sa": ["T1078", "credentials"], "unaccounted": ["T1552", "credentials"],
    "decision-conflict": ["T1098", "credentials"], "jti-collision": ["T1550", "credentials"],
    "subject-mismatch": ["T1550", "credentials"], "minted-for-another": ["T1528", "credentials"],
}


class CredentialConsumer:
    """``lateness_secs`` None: ``allowed_lateness_secs`` of ``DATA/detect.yaml``; 0 applies records in
    arrival order. ``live`` (``run``, ``webhook serve``): held records stay held across a restart and
    ``tick`` releases them with wall time; otherwise ``close`` releases everything. ``settings``: the
    detection settings (default ``DATA/detect.yaml``): flags turned off or excepted there are not raised."""

    def __init__(self, store: Store, alerts: bool = True, lateness_secs: float | None = None, live: bool = False,
                 clock: Callable[[], int] = time.time_ns, settings: DetectSettings | None = None) -> None:
        self.store = store
        self.alerts = alerts
        self.live = live
        self.clock = clock
        self.settings = settings if settings is not None else settings_for(store.data_dir)
        self.ledger = Ledger(store.credentials)
        # credential -> what its flags were last evaluated from: (the document's fingerprint, the rest)
        self._inputs: dict[str, tuple[bytes, tuple[Any, ...]]] = {}
        if lateness_secs is None:
            lateness_secs = self.settings.allowed_lateness_secs
        self.lateness_ns = int(lateness_secs * 1e9)
        self.buffer = self._held()
        self.catch_up()

    def next_leaf(self) -> int:
        return int(self.ledger.state("next_leaf", "0"))

    def _frontier(self) -> tuple[int, str] | None:
        raw = self.ledger.state("frontier", "")
        return (int(orjson.loads(raw)[0]), str(orjson.loads(raw)[1])) if raw else None

    def _held(self) -> ReorderBuffer:
        """The buffer as the store last saw it: the records in ``pending`` ordered after the frontier."""
        buffer = ReorderBuffer(self.lateness_ns, frontier=self._frontier())
        raw = self.ledger.state("pending", "")
        if raw:
            start, end = orjson.loads(raw)
            restore(buffer, self.store, int(start), int(end), self.clock())
        return buffer

    def consume(self, records: list[Record], store: Store) -> None:
        apply_in_order(self.store, records, self.next_leaf, self.apply)

    def catch_up(self, until: int | None = None) -> int:
        """Receive every stored record from ``next_leaf`` to ``until`` (default: the end); returns how many."""
        return catch_up(self.store, self.next_leaf, self.apply, until)

    def apply(self, records: list[Record]) -> None:
        """Receive these records and apply what the watermark releases (all of it at ``lateness 0``)."""
        self._step(records)

    def tick(self, store: Store) -> None:
        """Wall-clock progress (``run``): what has waited ``allowed_lateness_secs`` is applied."""
        self._step([], now=self.clock())

    def flush(self) -> None:
        """Apply everything held (the end of an ``ingest``: nothing more will arrive)."""
        self._step([], drain=True)

    def drain_some(self, n: int) -> bool:
        """``flush`` a slice at a time (``ordering.drain_together``), each slice in a transaction of its
        own; nothing when ``close`` would keep what is held (``live``)."""
        if self.live:
            return False
        self._step([], oldest=n)
        return len(self.buffer) > 0

    def _step(self, records: list[Record], now: int | None = None, drain: bool = False,
              oldest: int | None = None) -> None:
        ledger = self.ledger
        late_n = 0
        try:
            with self.store.transaction() as tx:
                tx.credentials.lock()
                ledger.repo = tx.credentials
                start = self.next_leaf()  # re-read under the write lock: another process may have received some
                fresh = [r for r in records if r.leaf_index is not None and r.leaf_index >= start]
                shared = self._frontier()  # another process may have applied further
                if shared is not None and (self.buffer.frontier is None or shared > self.buffer.frontier):
                    self.buffer.frontier = shared
                late = sorted(self.buffer.add([r for r in fresh if r.kind == "audit"], self.clock()),
                              key=lambda r: (r.time, r.key))
                late_n = len(late)
                if now is not None:
                    self.buffer.advance(now)
                entries = (self.buffer.drain() if drain else self.buffer.oldest(oldest) if oldest is not None
                           else self.buffer.ready())
                self._apply_each(late)
                for part in released(self.store, entries):
                    self._apply_each(after(part, shared))
                until = max(start, max(map(_LEAF, fresh)) + 1) if fresh else start
                ledger.set_state("next_leaf", str(until))
                if self.buffer.frontier is not None:
                    ledger.set_state("frontier", orjson.dumps(list(self.buffer.frontier)).decode())
                ledger.set_state("pending", orjson.dumps([self.buffer.pending_from(until), until]).decode())
        except BaseException:
            self._inputs.clear()  # the flags those evaluations raised were rolled back
            self.buffer = self._held()  # what this step took out of the buffer is held again
            raise
        finally:
            ledger.repo = self.store.credentials
            ledger.reset_cache()
        if late_n:
            self.store.count(LATE_COUNTER, late_n)
        if self.alerts:
            self.raise_alerts()

    def _apply_each(self, records: list[Record]) -> None:
        """Apply records, in the order given, inside the caller's transaction."""
        ledger = self.ledger
        handle, link_, evaluate, store = inventory.handle, link.link, self._evaluate, self.store
        for r in records:  # per record: the names above are bound once (this runs for every record)
            touched = ledger.touched
            touched.clear()
            ledger.reshaped.clear()
            handle(ledger, r)
            link_(ledger, r, store)
            if touched:
                evaluate(sorted(touched) if len(touched) > 1 else list(touched))
        ledger.flush()

    def _replay(self, records: list[Record]) -> int:
        """Apply records already in event-time order in one transaction (``rebuild``)."""
        if not records:
            return 0
        try:
            with self.store.transaction() as tx:
                self.ledger.repo = tx.credentials
                self._apply_each(records)
                last = records[-1]
                self.ledger.set_state("frontier", orjson.dumps([last.time, last.key]).decode())
        except BaseException:
            self._inputs.clear()
            raise
        finally:
            self.ledger.repo = self.store.credentials
            self.ledger.reset_cache()
        if self.alerts:
            self.raise_alerts()
        return len(records)

    def _evaluate(self, cred_ids: list[str]) -> None:
        """Flags of the credentials one record changed: per record, so batching never changes a result.

        A rule reads the credential's document, four things of its aggregate (the source IPs, whether it
        was used, the first use) and the cluster-admin bindings; when none of those changed since the
        credential was last evaluated (a plain repeat use, most of the traffic) the answer is the same
        flags, all raised already, and evaluation is skipped. The document is fingerprinted again only
        when this record changed it (``Ledger.reshaped``): every change goes through ``put``/``touch``. The memory of what was evaluated is
        forgotten with any rollback (``_forget``), since the flags it raised were rolled back too."""
        ledger = self.ledger
        seen = self._inputs
        reshaped = ledger.reshaped
        bindings = ledger.bindings_token()  # the bindings change only with a record (``set_binding``), never here
        for cid in cred_ids:
            cred = ledger.get(cid)
            if cred is None:
                continue
            agg = ledger.aggregate(cid)
            rest = (len(agg.ips), agg.uses > 0, agg.first_used, agg.first_use.get("key"), bindings)
            before = seen.get(cid)  # (fingerprint of the document, rest)
            if before is not None and cid not in reshaped:  # the document is the one last fingerprinted
                if before[1] == rest:
                    continue
                inputs = (before[0], rest)
            else:
                inputs = (hashlib.blake2b(encode(cred), digest_size=16).digest(), rest)
                if before == inputs:
                    continue
            if len(seen) >= EVALUATED_LIMIT:
                seen.clear()
            have = ledger.flags(cid)
            settled = have - ledger.facts(cid) if have else frozenset()  # raised as attacks: nothing to add
            for f in flags.evaluate(cred, agg, ledger, self.settings, settled):
                if f.flag not in have:
                    ledger.add_flag(cid, f)
                elif f.alert:
                    ledger.promote_flag(cid, f.flag)
            seen[cid] = inputs

    def raise_alerts(self) -> int:
        """One alert per new flag; returns how many flags were sent to the alert store."""
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
                origin="credentials", dedup_key=f"credentials\x1f{cid}\x1f{flag}",
                group={"subject": subject or cid, "credential": credential_id or cid}))
        ids = record_alerts(self.store, alerts, self.settings)
        with self.store.transaction() as tx:
            tx.credentials.mark_alerted([(aid, row[0], row[1]) for aid, row in zip(ids, rows, strict=True)])
        return len(rows)

    def close(self) -> None:
        """Outside ``run``, apply what is still held; each step committed its own transaction."""
        if not self.live:
            self.flush()


def after(records: list[Record], frontier: tuple[int, str] | None) -> list[Record]:
    """The records ordered after ``frontier`` (all of them when there is none), of records released in
    ``(time, key)`` order: when the first is after it, all are, and the list is taken as it is rather
    than comparing a new ``(time, key)`` tuple per record (this runs for every record applied)."""
    if frontier is None or not records or (records[0].time, records[0].key) > frontier:
        return records
    return [r for r in records if (r.time, r.key) > frontier]


def rebuild(store: Store, alerts: bool = True, chunk: int = 2000) -> int:
    """Forget the inventory and recompute it from every stored record in event-time order (the answer
    of an in-order delivery, whatever the arrival was); returns the records read.

    Alerts already raised stay; the rebuilt flags find them by ``dedup_key`` and raise none twice.
    """
    with store.transaction() as tx:
        tx.credentials.clear()
    consumer = CredentialConsumer.__new__(CredentialConsumer)
    consumer.store, consumer.alerts, consumer.live, consumer.clock = store, alerts, False, time.time_ns
    consumer.ledger, consumer.lateness_ns = Ledger(store.credentials), 0
    consumer._inputs = {}
    consumer.settings = settings_for(store.data_dir)
    consumer.buffer = ReorderBuffer(0)
    size = store.size()
    read = 0
    batch: list[Record] = []
    for r in event_order(store):
        if r.leaf_index is not None and r.leaf_index < size:
            batch.append(r)
        if len(batch) >= chunk:
            read += consumer._replay(batch)
            batch = []
    read += consumer._replay(batch)
    with store.transaction() as tx:
        tx.credentials.set_state("next_leaf", str(size))
        tx.credentials.set_state("pending", orjson.dumps([size, size]).decode())
    return read


def credentials_consumer(store: Store, options: Any) -> CredentialConsumer:
    """The pipeline's factory (``pipeline.CONSUMERS``): alerts only when detection is on."""
    return CredentialConsumer(store, alerts=bool(getattr(options, "detect", True)),
                              live=bool(getattr(options, "live", False)),
                              settings=getattr(options, "detect_settings", None))
