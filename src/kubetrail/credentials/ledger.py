"""The credential inventory's working set over the store's credential tables, with a per-batch cache.

The consumer opens one transaction per batch and points ``Ledger.repo`` at that transaction's
``credentials`` repository; ``Ledger`` reads documents through a cache, marks what changed, and
``flush`` writes the changed documents and aggregates before the commit.

"Is this request new?" (a request seen at two stages counts once) is answered by the database: a use
is inserted with ``ON CONFLICT DO NOTHING`` and it is new when a row went in. Most uses need not ask:
the table is keyed (credential, received, request), so a use received after the newest ``received``
the credential has (stored or queued, ``newest_use`` read once per credential per flush) cannot be
there yet. Those are queued and written by ``flush`` in one statement — every linked record was a
statement of its own before (~2-3 µs each, issue 18). An older request (a watch or a slow request
ends after later ones began; 1.2 % of the bench's records) is looked up in the queue, then by its key
in the table (``has_use``), and queued when new: the queue is written only by ``flush`` and before
what moves or removes a credential's uses (``merge``, ``delete``), so it goes in as one statement
(on PostgreSQL ``COPY``) rather than in pieces split at every older request.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import orjson

from kubetrail.credentials.model import Credential, Flag, decode, encode
from kubetrail.store.api import CredentialsRepo

_UNKNOWN: Any = object()  # ``Ledger._newest`` has not read the credential yet
MAX_DISTINCT = 100  # per stats map; later values are counted under "(other)"
DENIED = (401, 403)


def _count(counts: dict[str, int], value: str) -> None:
    """One more of ``value`` in a use-stats map, or of "(other)" once the map holds MAX_DISTINCT values.
    (Called three times per use: ~30 ns more than writing it out, ~50 ns less than a loop over pairs.)"""
    n = counts.get(value)
    if n is not None:
        counts[value] = n + 1
    elif len(counts) < MAX_DISTINCT:
        counts[value] = 1
    else:
        counts["(other)"] = counts.get("(other)", 0) + 1


class Aggregate(msgspec.Struct, kw_only=True):
    uses: int = 0
    exact_uses: int = 0
    probable_uses: int = 0
    denied: int = 0
    first_used: int | None = None
    last_used: int | None = None
    # ip -> {"n", "first", "key", "audit_id", "stage", "leaf_index", "uses_before"}
    ips: dict[str, dict[str, Any]] = {}
    user_agents: dict[str, int] = {}
    verbs: dict[str, int] = {}
    resources: dict[str, int] = {}
    first_use: dict[str, Any] = {}


class Ledger:
    def __init__(self, repo: CredentialsRepo) -> None:
        self.repo = repo
        self._docs: dict[str, Credential | None] = {}
        self._aggs: dict[str, Aggregate] = {}
        self.dirty: set[str] = set()
        self.touched: set[str] = set()  # changed by the record being applied (flags are evaluated per record)
        self.reshaped: set[str] = set()  # of those, the ones whose document changed (``put``/``touch``, not ``used``)
        self._flags: dict[str, set[str]] = {}
        self._facts: dict[str, set[str]] = {}
        self._cids: dict[str, str] = {}  # credential id -> credential, for documents in the cache
        self._bindings: dict[str, list[tuple[Any, ...]]] | None = None
        self._bindings_token: int = 0  # fingerprint of the cluster-admin bindings loaded in ``_bindings``
        # (column, value) -> the ids of the stored rows with it (``_stored_ids``: read once per flush)
        self._stored: dict[tuple[str, str], list[str]] = {}
        self._dirty_aggs: set[str] = set()
        self._subjects: set[str] | None = None
        # (JTI credential id, requesting user) -> (credential, link) as ``link._token_for`` answered it; forgotten
        # when a document with a JTI credential id changes (``touch``; ids only ever become JTIs, never stop being
        # one, except by ``delete``/``merge``), at ``delete`` and with this step's caches
        self.tokens: dict[tuple[str, str], tuple[str, str]] = {}
        self._new_uses: list[list[Any]] = []  # uses known to be new, written by ``flush`` (module doc)
        self._queued: dict[tuple[str, int, str], list[Any]] = {}  # the same rows by their key
        self._newest: dict[str, int | None] = {}  # credential -> newest ``received`` stored or queued (this flush)

    # -- credentials ----------------------------------------------------------------------------
    def get(self, cred_id: str) -> Credential | None:
        if cred_id not in self._docs:
            doc = self.repo.doc(cred_id)
            self._docs[cred_id] = decode(doc) if doc is not None else None
        return self._docs[cred_id]

    def by_credential_id(self, credential_id: str) -> Credential | None:
        known = self._cids.get(credential_id)
        if known is not None:
            c = self._docs.get(known)
            if c is not None and c.credential_id == credential_id:
                return c
        ids = self.repo.ids_by_credential_id_ranked(credential_id)
        found = self.get(ids[0]) if ids else None
        if found is not None:
            self._cids[credential_id] = found.id
        return found

    def all_by_credential_id(self, credential_id: str) -> list[Credential]:
        """Every credential with this credential id (two when a JTI was issued twice), oldest first."""
        ids = set(self._stored_ids("credential_id", credential_id))
        ids.update(c.id for c in self._pending() if c.credential_id == credential_id)
        found = [c for c in (self.get(i) for i in ids) if c is not None and c.credential_id == credential_id]
        return sorted(found, key=lambda c: (not c.accounted, c.created_at or 0, c.id))

    def by_lookup(self, lookup: str) -> list[Credential]:
        """Every credential with this lookup key, oldest first."""
        ids = set(self._stored_ids("lookup", lookup))
        ids.update(c.id for c in self._pending() if c.lookup == lookup)
        found = [c for c in (self.get(i) for i in ids) if c is not None and c.lookup == lookup]
        return sorted(found, key=lambda c: (c.created_at or 0, c.id))

    def by_subject(self, subject: str) -> list[Credential]:
        ids = set(self._stored_ids("subject", subject))
        ids.update(c.id for c in self._pending() if c.subject == subject)
        return [c for c in (self.get(i) for i in sorted(ids)) if c is not None and c.subject == subject]

    def _stored_ids(self, column: str, value: str) -> list[str]:
        """``repo.ids_where``, read once per flush. The stored rows change only at ``flush`` (and ``delete``,
        after which ``get`` answers None), and every caller adds the pending documents and keeps only the
        documents that, as this ledger holds them now, still have ``value``: so what was read stays right
        until the flush. ``by_subject`` runs for every request linked by its username (clusters before
        1.30 give no credential id): on PostgreSQL a round trip each, ~5 % of a Metadata ingest."""
        found = self._stored.get((column, value))
        if found is None:
            found = self._stored[column, value] = self.repo.ids_where(column, value)
        return found

    def subjects_like(self, prefix: str) -> list[Credential]:
        ids = self.repo.ids_subject_prefix(prefix)
        return [c for c in (self.get(i) for i in ids) if c is not None]

    def issued_without_certificate(self, subject: str, limit: int = 5) -> list[str]:
        """CSR credentials approved or issued whose certificate the log did not show (Metadata level)."""
        ids = self.repo.ids_issued_without_certificate(subject)
        ids += [c.id for c in self._pending() if c.id not in ids]
        found = [c for c in (self.get(i) for i in ids) if c is not None and c.status in ("approved", "decided")
                 and c.kind == "cert" and c.accounted and not c.credential_id and c.subject in (subject, "")]
        return [c.id for c in found[:limit]]

    def has_subject(self, subject: str) -> bool:
        if self._subjects is None:
            self._subjects = self.repo.subjects()
        return subject in self._subjects

    def _pending(self) -> list[Credential]:
        return [c for i in self.dirty if (c := self._docs.get(i)) is not None]

    def new_id(self, base: str) -> str:
        cand, n = base, 1
        while self.get(cand) is not None:
            n += 1
            cand = f"{base}~{n}"
        return cand

    def put(self, cred: Credential) -> None:
        self._docs[cred.id] = cred
        if cred.credential_id:
            self._cids[cred.credential_id] = cred.id
        self.touch(cred.id)
        if self._subjects is not None and cred.subject:
            self._subjects.add(cred.subject)

    def touch(self, cred_id: str) -> None:
        if self.tokens:  # a JTI answer changes only with a document that has (or now gets) a JTI credential id
            c = self._docs.get(cred_id)
            if c is None or c.credential_id.startswith("JTI="):
                self.tokens.clear()
        self.dirty.add(cred_id)
        self.touched.add(cred_id)
        self.reshaped.add(cred_id)

    def used(self, cred_id: str) -> None:
        """A stored credential used again, its document unchanged: its flags are looked at again (the use
        may bring a new source IP), but the document is neither rewritten nor fingerprinted again."""
        self.touched.add(cred_id)

    def delete(self, cred_id: str) -> None:
        self.tokens.clear()
        self._write_uses()
        self._newest.pop(cred_id, None)
        self.repo.delete(cred_id)
        self._docs[cred_id] = None
        self._aggs.pop(cred_id, None)
        self.dirty.discard(cred_id)
        self.touched.discard(cred_id)
        self.reshaped.discard(cred_id)
        self._flags.pop(cred_id, None)
        self._facts.pop(cred_id, None)
        self._dirty_aggs.discard(cred_id)

    def merge(self, src: Credential, into: Credential) -> None:
        """Move ``src``'s uses to ``into`` (an issuance seen after the first uses) and drop ``src``."""
        self._write_uses()
        self.repo.move_uses(src.id, into.id)
        self._newest.pop(src.id, None)
        self._newest.pop(into.id, None)
        old = self.aggregate(src.id)
        agg = self.aggregate(into.id)
        agg.uses += old.uses
        agg.exact_uses += old.exact_uses
        agg.probable_uses += old.probable_uses
        agg.denied += old.denied
        for t in (old.first_used,):
            if t is not None and (agg.first_used is None or t < agg.first_used):
                agg.first_used, agg.first_use = t, old.first_use
        if old.last_used is not None and (agg.last_used is None or old.last_used > agg.last_used):
            agg.last_used = old.last_used
        for ip, info in old.ips.items():
            agg.ips.setdefault(ip, info)
        for src_map, dst_map in ((old.user_agents, agg.user_agents), (old.verbs, agg.verbs),
                                 (old.resources, agg.resources)):
            for k, v in src_map.items():
                dst_map[k] = dst_map.get(k, 0) + v
        self._dirty_aggs.add(into.id)
        self.delete(src.id)

    # -- uses -----------------------------------------------------------------------------------
    def aggregate(self, cred_id: str) -> Aggregate:
        agg = self._aggs.get(cred_id)
        if agg is None:
            row = self.repo.aggregate(cred_id)
            agg = Aggregate()
            if row:
                stats = orjson.loads(row[6])
                agg = Aggregate(uses=row[0], exact_uses=row[1], probable_uses=row[2], denied=row[3],
                                first_used=row[4], last_used=row[5], **stats)
            self._aggs[cred_id] = agg
        return agg

    def add_use(self, cred_id: str, record: Any, link: str) -> bool:
        """Record one use; True when it is a new request for this credential. (Runs for every record
        linked to a credential: written out rather than in helpers.)"""
        m = record.meta
        t = record.time
        received = t if m.request_received is None else m.request_received  # the key's place (migration 0013)
        request = m.audit_id or record.key
        code = m.code
        newest = self._newest.get(cred_id, _UNKNOWN)
        if newest is _UNKNOWN:
            newest = self._newest[cred_id] = self.repo.newest_use(cred_id)
        queued: list[Any] | None = None
        if newest is None or received > newest:  # type: ignore[operator]
            self._newest[cred_id] = received  # cannot be stored yet
            new = True
        else:  # an older request: queued, stored, or new
            queued = self._queued.get((cred_id, received, request))
            new = queued is None and not self.repo.has_use(cred_id, received, request)
        if new:
            row = [cred_id, received, request, t, record.leaf_index, code, link]
            self._new_uses.append(row)  # written by ``flush``
            self._queued[cred_id, received, request] = row
        agg = self._aggs.get(cred_id)
        if agg is None:
            agg = self.aggregate(cred_id)
        self._dirty_aggs.add(cred_id)
        if not new:  # another stage of a request counted already: its code, once known
            if code is not None:
                if queued is not None:
                    filled = queued[5] is None
                    if filled:
                        queued[5] = code
                else:
                    filled = self.repo.set_use_code(cred_id, received, request, code)
                if filled and code in DENIED:
                    agg.denied += 1
            return False
        ip = m.source_ips[-1] if m.source_ips else ""
        first = agg.first_used is None or t < agg.first_used
        new_ip = bool(ip) and ip not in agg.ips and len(agg.ips) < MAX_DISTINCT
        evidence = {"key": record.key, "audit_id": m.audit_id, "stage": m.stage, "leaf_index": record.leaf_index,
                    "time": t} if first or new_ip else {}  # built only when kept: most uses are repeats
        if new_ip:
            agg.ips[ip] = {**evidence, "uses_before": agg.uses,
                           "after_first_ns": t - agg.first_used if agg.first_used is not None else 0}
        agg.uses += 1
        if link == "exact":
            agg.exact_uses += 1
        elif link == "probable":
            agg.probable_uses += 1  # "mismatched" (a token presented by another subject) is neither
        if code in DENIED:
            agg.denied += 1
        if first:
            agg.first_used, agg.first_use = t, evidence
        if agg.last_used is None or t > agg.last_used:
            agg.last_used = t
        resource = (m.resource + "/" + m.subresource if m.subresource else m.resource) or \
            m.request_uri.split("?", 1)[0]
        _count(agg.user_agents, m.user_agent)
        _count(agg.verbs, m.verb)
        _count(agg.resources, resource)
        return True

    # -- flags ----------------------------------------------------------------------------------
    def flags(self, cred_id: str) -> set[str]:
        have = self._flags.get(cred_id)
        if have is None:
            have = self.repo.flags(cred_id)
            self._flags[cred_id] = have
        return have

    def add_flag(self, cred_id: str, f: Flag) -> bool:
        new = self.repo.add_flag(
            (cred_id, f.flag, f.priority, f.explanation, f.time, f.key, f.audit_id, f.stage, f.leaf_index,
             0 if f.alert else 2))
        self.flags(cred_id).add(f.flag)
        if not f.alert:
            self.facts(cred_id).add(f.flag)
        return new

    def facts(self, cred_id: str) -> set[str]:
        have = self._facts.get(cred_id)
        if have is None:
            have = self.repo.fact_flags(cred_id)
            self._facts[cred_id] = have
        return have

    def promote_flag(self, cred_id: str, flag: str) -> None:
        """A flag kept as a fact now means an attack: it is alerted with the next ``raise_alerts``."""
        if flag in self.facts(cred_id):
            self.repo.promote_flag(cred_id, flag)
            self.facts(cred_id).discard(flag)

    # -- cluster-admin bindings -----------------------------------------------------------------
    def set_binding(self, binding: str, subjects: list[str], record: Any) -> None:
        self.repo.set_binding(binding, [(binding, s, record.key, record.meta.audit_id, record.leaf_index, record.time)
                                        for s in subjects])
        self._bindings = None

    def _load_bindings(self) -> dict[str, list[tuple[Any, ...]]]:
        if self._bindings is None:
            self._bindings = {}
            rows = [tuple(row) for row in self.repo.bindings()]
            for row in rows:
                self._bindings.setdefault(row[1], []).append(row)
            self._bindings_token = hash(tuple(sorted(rows, key=repr)))
        return self._bindings

    def bindings_token(self) -> int:
        """A fingerprint of every cluster-admin binding as stored now: a credential's flags depend on the
        bindings only through ``admin_bindings``, so an unchanged token means unchanged answers."""
        self._load_bindings()
        return self._bindings_token

    def admin_bindings(self, subjects: list[str]) -> list[tuple[Any, ...]]:
        """(binding, subject, key, audit_id, leaf_index, time) of cluster-admin bindings naming any subject."""
        self._bindings = self._load_bindings()
        rows = [r for s in subjects for r in self._bindings.get(s, [])]
        return sorted(rows, key=lambda r: r[5])

    # -- state ----------------------------------------------------------------------------------
    def state(self, name: str, default: str = "") -> str:
        value = self.repo.state(name)
        return default if value is None else value

    def set_state(self, name: str, value: str) -> None:
        self.repo.set_state(name, value)

    def _write_uses(self) -> None:
        if self._new_uses:
            self.repo.add_uses(self._new_uses)
            self._new_uses = []
            self._queued.clear()

    def flush(self) -> None:
        self._write_uses()
        self._newest.clear()  # read again under the next transaction's lock (another process may add uses)
        now = time.time_ns()
        rows = []
        for cid in sorted(self.dirty):
            c = self._docs.get(cid)
            if c is not None:
                rows.append((c.id, c.kind, c.credential_id, c.subject, c.lookup, int(c.accounted), c.created_at,
                             c.expires_at, encode(c).decode(), now))
        self.repo.upsert(rows)
        arows = []
        for cid in sorted(self._dirty_aggs):
            a = self._aggs[cid]
            stats = orjson.dumps({"ips": a.ips, "user_agents": a.user_agents, "verbs": a.verbs,
                                  "resources": a.resources, "first_use": a.first_use}).decode()
            arows.append((cid, a.uses, a.exact_uses, a.probable_uses, a.denied, a.first_used, a.last_used, stats))
        self.repo.upsert_aggregates(arows)
        self._stored.clear()
        self.tokens.clear()
        self.dirty.clear()
        self._dirty_aggs.clear()

    def reset_cache(self) -> None:
        """Forget cached documents (after a rollback, or to bound memory between batches); queued uses
        are dropped with them (``flush`` wrote them on the way to a commit)."""
        self._new_uses = []
        self._queued.clear()
        self._newest.clear()
        self._docs.clear()
        self._aggs.clear()
        self.dirty.clear()
        self.touched.clear()
        self.reshaped.clear()
        self._flags.clear()
        self._facts.clear()
        self._cids.clear()
        self._bindings = None
        self._stored.clear()
        self.tokens.clear()
        self._dirty_aggs.clear()
        self._subjects = None
