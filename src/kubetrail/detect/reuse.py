"""Audit ID reused with different content: two stored records with one ``auditID`` and ``stage``.

The record key covers the whole event (docs/specs/event-identity.md), so a client that sets the
``Audit-ID`` header to an ID already used, or an event forged to look like a known one, is stored as
a second record instead of being dropped as a duplicate. The apiserver never writes two different
events for one ``auditID`` and stage, so such a pair is either a broken client or an attempt to hide
an event behind another: this check raises one alert per pair of variants.

The pair, not the arrival, decides everything about the alert (evidence ordered by event time and
key, subject = the user of the later variant, de-duplication key = both record keys), so the
alert is the same whichever variant arrives first. Two cases are not reuse and stay quiet:

* a record stored under an older key version (before ``kubetrail store rekey``) whose body has the
  new record's key: the same event, stored once more because its old key differed;
* a copy truncated by the apiserver (annotation ``audit.k8s.io/truncated: "true"``: the request and
  response objects removed because a backend's size limit was reached), equal to the other variant
  without those objects.

Bodies are read only for the rare collisions; the lookup itself is one indexed query per batch.
"""

from __future__ import annotations

from typing import Any

from kubetrail.alerts.alert import Alert, Evidence
from kubetrail.stages.identity import event_key
from kubetrail.store.api import AuditIdRow, Store

RULE = "Audit ID Reused With Different Content"
TRUNCATED = "audit.k8s.io/truncated"
_OBJECTS = ("requestObject", "responseObject")


def _untruncated(event: dict[str, Any]) -> dict[str, Any]:
    ev = {k: v for k, v in event.items() if k not in _OBJECTS}
    notes = ev.get("annotations")
    if isinstance(notes, dict) and TRUNCATED in notes:
        rest = {k: v for k, v in notes.items() if k != TRUNCATED}
        if rest:
            ev["annotations"] = rest
        else:
            del ev["annotations"]
    return ev


def _truncated(event: dict[str, Any]) -> bool:
    notes = event.get("annotations")
    return isinstance(notes, dict) and notes.get(TRUNCATED) == "true"


class AuditIdReuse:
    """``prepare(records)`` once per batch, then ``observe(record)`` for each."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._rows: dict[tuple[str, str], list[AuditIdRow]] = {}

    def prepare(self, records: list[Any]) -> bool:
        """Look the batch's auditIDs up; False when none has two stored variants (``observe`` would
        then find nothing for any of these records)."""
        ids = [r.meta.audit_id for r in records if r.kind == "audit" and r.meta.audit_id]
        self._rows = {}
        for row in self.store.keys.by_audit_id(ids) if ids else []:
            self._rows.setdefault((row.audit_id, row.stage), []).append(row)
        return bool(self._rows)

    def observe(self, record: Any) -> list[Alert]:
        m = record.meta
        others = [o for o in self._rows.get((m.audit_id, m.stage), []) if o.key != record.key]
        if not m.audit_id or not others:
            return []
        out = []
        for other in others:
            stored = self.store.get(other.key)
            if stored is None or not stored.body or self._same_event(record, stored):
                continue
            out.append(self._alert(record, other))
        return out

    @staticmethod
    def _same_event(record: Any, stored: Any) -> bool:
        try:
            theirs = stored.event()
        except ValueError:
            return False
        mine = record.event()
        if event_key(theirs) == record.key:
            return True  # the same event under an older key version
        if _truncated(mine) != _truncated(theirs):
            return event_key(_untruncated(mine)) == event_key(_untruncated(theirs))
        return False

    @staticmethod
    def _alert(record: Any, other: AuditIdRow) -> Alert:
        m = record.meta
        mine = (record.time, record.key, m.user, Evidence.of(record))
        theirs = (other.time, other.key, other.user,
                  Evidence(key=other.key, audit_id=other.audit_id, stage=other.stage, leaf_index=other.leaf_index))
        first, later = sorted([mine, theirs], key=lambda v: (v[0], v[1]))
        subject = later[2] or "unknown"
        users = " and ".join(dict.fromkeys(u or "unknown" for u in (first[2], later[2])))
        return Alert(
            rule=RULE, priority="Warning", time=later[0], subject=subject,
            output=(f"auditID {m.audit_id} (stage {m.stage or 'none'}) was stored twice with different content "
                    f"(user {users}): a client reusing an Audit-ID, or an event made to hide behind another"),
            fields={"audit_id": m.audit_id, "stage": m.stage, "keys": [first[1], later[1]]},
            tags=["k8s", "T1562.008", "T1070"], evidence=[first[3], later[3]], origin="stateful",
            dedup_key=f"{RULE}\x1f{m.audit_id}\x1f{m.stage}\x1f{min(first[1], later[1])}\x1f{max(first[1], later[1])}")
