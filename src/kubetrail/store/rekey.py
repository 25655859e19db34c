"""``kubetrail store rekey``: give every entry stored under key v1 its current key as an alias.

Leaves are never rewritten (their entry commits to the key they were stored with), so an upgraded
store keeps its v1 keys and a re-delivery of an old event would get a v2 key the store has never
seen. ``rekey`` reads each v1 entry's stored (redacted) body, computes its current key with the
function it is given (``stages/identity.event_key`` — the store does not know the key's
definition), and records ``alias → leaf_index`` in ``key_aliases`` (``store/keys.py``), which
``Store.append`` consults as well as ``entries.key``. Progress commits per chunk
(``key_state.rekeyed_upto``), so an interrupted run resumes. The end is one trail record of kind
``marker`` that states what was done and the SHA-256 of the alias list: the migration itself is in
the tamper-evident trail (docs/specs/event-identity.md §5).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import msgspec
import orjson

from kubetrail.record import AuditMeta, Record, SourceRef
from kubetrail.store.api import Store

CHUNK = 5000
MARKER_SOURCE = SourceRef(stream="kubetrail:store-rekey")
MARKER_KEY_VERSION = b"kubetrail-marker/v1\n"


class RekeyResult(msgspec.Struct, kw_only=True):
    entries: int = 0  # entries keyed v1 (all of [0, legacy_below))
    aliases: int = 0  # aliases in the table now
    stored_twice: int = 0  # v1 entries whose v2 key another entry already has (the same event twice)
    without_body: int = 0  # v1 entries whose body retention pruned: no v2 key can be computed
    marker_leaf: int | None = None  # the trail record of this migration
    aliases_sha256: str = ""
    done: bool = False  # False: there was nothing to re-key


def pending(store: Store) -> tuple[int, int] | None:
    """``(from, to)``: the leaves still to re-key, or None when every entry has a current key."""
    return store.keys.pending()


def rekey(store: Store, key_of: Callable[[bytes], str | None], chunk: int = CHUNK) -> RekeyResult:
    """Alias every v1 entry to ``key_of(body)``; record the migration in the trail."""
    todo = store.keys.pending()
    if todo is None:
        return RekeyResult()
    start, end = todo
    for lo in range(start, end, chunk):
        hi = min(lo + chunk, end)
        rows: list[tuple[str, int]] = []
        without = 0
        for record in store.records_by_index(lo, hi):
            if record.kind != "audit":
                continue
            key = key_of(record.body) if record.body else None
            if key is None:
                without += 1
            elif key != record.key:
                rows.append((key, record.leaf_index or 0))
        with store.transaction() as tx:
            taken = tx.keys.taken([k for k, _ in rows])
            added = tx.keys.add_aliases([r for r in rows if r[0] not in taken])
            tx.keys.progress(hi, len(rows) - added, without)
    digest = hashlib.sha256()
    count = 0
    for alias, leaf in store.keys.aliases():
        digest.update(f"{alias} {leaf}\n".encode())
        count += 1
    result = RekeyResult(entries=end, aliases=count, stored_twice=store.keys.state("stored_twice") or 0,
                         without_body=store.keys.state("without_body") or 0, aliases_sha256=digest.hexdigest(),
                         done=True)
    # No wall time in the body: a run interrupted after this append makes the same record again,
    # which the store refuses as a duplicate, so the trail holds one marker per migration.
    body = orjson.dumps({"marker": "store-rekey", "from": "kubetrail-audit-key/v1", "to": "kubetrail-audit-key/v2",
                         "entries": result.entries, "aliases": result.aliases, "stored_twice": result.stored_twice,
                         "without_body": result.without_body, "aliases_sha256": result.aliases_sha256},
                        option=orjson.OPT_SORT_KEYS)
    key = hashlib.sha256(MARKER_KEY_VERSION + body).hexdigest()
    marker = Record(kind="marker", key=key, time=time.time_ns(), source=MARKER_SOURCE, body=body, meta=AuditMeta(),
                    format="marker")
    stored = store.append([marker]).stored
    found = stored[0] if stored else store.get(key)
    result.marker_leaf = found.leaf_index if found is not None else None
    with store.transaction() as tx:
        tx.keys.finish()
    return result
