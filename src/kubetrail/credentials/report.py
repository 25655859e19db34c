"""Read side of the inventory: the public JSON shapes of ``creds list`` and ``creds show``, and the
text the CLI and ``kubetrail demo`` print. The JSON keys are a contract: add, never rename.

Listing reads only ``credentials``, ``credential_aggregates`` and ``credential_flags`` (no scan of
uses), so it stays fast however busy a credential was; ``show`` adds the usage timeline.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson

from kubetrail.credentials.flags import gap_notes
from kubetrail.credentials.ledger import Aggregate
from kubetrail.credentials.model import Credential, decode
from kubetrail.errors import NotFoundError
from kubetrail.store.api import CredentialsRepo
from kubetrail.timefmt import format_ns

PRIORITY_ORDER = ("Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug")
USE_EVIDENCE = 10  # first and last uses named in a list entry's evidence
FACT = 2  # credential_flags.alerted of a standing fact (no alert; flags.py)


class CredentialReader(Protocol):
    @property
    def credentials(self) -> CredentialsRepo: ...


def _agg(row: tuple[Any, ...] | None) -> Aggregate:
    if row is None:
        return Aggregate()
    return Aggregate(uses=row[0], exact_uses=row[1], probable_uses=row[2], denied=row[3], first_used=row[4],
                     last_used=row[5], **orjson.loads(row[6]))


def state_of(cred: Credential, now_ns: int) -> str:
    """active | expired | revoked | not-issued (pending, denied or failed requests)."""
    if cred.revoked_at is not None:
        return "revoked"
    if cred.expires_at is not None and cred.expires_at <= now_ns:
        return "expired"
    if cred.kind == "cert" and cred.status in ("pending", "denied", "failed", "decided", ""):
        return "not-issued"
    return "active"


def _flags(repo: CredentialsRepo, cid: str) -> list[dict[str, Any]]:
    rows = repo.flag_rows(cid)
    out = [{"flag": f, "priority": p, "explanation": e, "time": format_ns(t) if t else None, "auditID": a,
            "leaf_index": li, "alert_id": al, "class": "fact" if done == FACT else "attack"}
           for f, p, e, t, a, li, al, done in rows]
    return sorted(out, key=lambda f: (PRIORITY_ORDER.index(f["priority"]) if f["priority"] in PRIORITY_ORDER else 9,
                                      f["flag"]))


def _use_evidence(repo: CredentialsRepo, cid: str, agg: Aggregate) -> list[dict[str, Any]]:
    first = repo.uses(cid, USE_EVIDENCE)
    last = repo.uses(cid, USE_EVIDENCE, newest_first=True) if agg.uses > USE_EVIDENCE else []
    seen, out = set(), []
    for a, li, link in ((u[1], u[3], u[11]) for u in first + last[::-1]):
        if li not in seen:
            seen.add(li)
            out.append({"auditID": a, "leaf_index": li, "link": link})
    return out


def entry(repo: CredentialsRepo, cred: Credential, agg: Aggregate, now_ns: int) -> dict[str, Any]:
    """One credential as ``creds list --json`` prints it."""
    ips = sorted(agg.ips.items(), key=lambda kv: kv[1].get("time", 0))
    return {
        "id": cred.id,
        "kind": cred.kind,
        "status": cred.status,
        "state": state_of(cred, now_ns),
        "unaccounted": not cred.accounted,
        "subject": cred.subject,
        "groups": cred.groups,
        "created_by": cred.created_by or None,
        "created_by_groups": cred.created_by_groups,
        "impersonator": cred.impersonator or None,
        "approved_by": cred.approved_by or None,
        "denied_by": cred.denied_by or None,
        "created_at": format_ns(cred.created_at),
        "approved_at": format_ns(cred.approved_at),
        "issued_at": format_ns(cred.issued_at),
        "expires_at": format_ns(cred.expires_at),
        "nominal_expires_at": format_ns(cred.nominal_expires_at),
        "revoked_at": format_ns(cred.revoked_at),
        "credential_id": cred.credential_id or None,
        "fingerprint": cred.fingerprint or None,
        "serial": cred.details.get("serial"),
        "jti": cred.jti or None,
        "uses": agg.uses,
        "exact_uses": agg.exact_uses,
        "probable_uses": agg.probable_uses,
        "denied": agg.denied,
        "first_used": format_ns(agg.first_used),
        "last_used": format_ns(agg.last_used),
        "source_ips": [ip for ip, _ in ips],
        "user_agents": sorted(agg.user_agents, key=lambda k: -agg.user_agents[k]),
        "flags": _flags(repo, cred.id),
        "reason": cred.details.get("reason"),  # kind unknown: why no credential explains the identity
        "machinery": cred.details.get("machinery"),
        "policy_gaps": gap_notes(cred),
        "evidence": {
            "creation": [{"action": s.action, "auditID": s.audit_id, "leaf_index": s.leaf_index, "link": s.link}
                         for s in cred.chain],
            "uses": _use_evidence(repo, cred.id, agg),
        },
    }


def _rank(e: dict[str, Any]) -> tuple[Any, ...]:
    """Worst flag first; then more serious (Warning or worse) flags; then unaccounted; then most used."""
    levels = [PRIORITY_ORDER.index(f["priority"]) for f in e["flags"] if f["priority"] in PRIORITY_ORDER]
    serious = sum(1 for level in levels if level <= PRIORITY_ORDER.index("Warning"))
    return (min(levels, default=9), -serious, not e["unaccounted"], -(e["uses"] or 0), e["id"])


def list_credentials(store: CredentialReader, kind: str | None = None, state: str | None = None, unaccounted: bool = False,
                     now_ns: int | None = None) -> list[dict[str, Any]]:
    """Every credential, riskiest first (see ``_rank``)."""
    now = time.time_ns() if now_ns is None else now_ns
    repo = store.credentials
    out = []
    for row in repo.listing(kind, unaccounted):
        cred = decode(row[0])
        e = entry(repo, cred, _agg(row[1:] if row[1] is not None else None), now)
        if state and e["state"] != state:
            continue
        out.append(e)
    return sorted(out, key=_rank)


def summary(store: CredentialReader) -> dict[str, Any]:
    """The inventory's standing facts in one finding: how many credentials carry each flag (split into
    facts and alerted attacks) and how many identities no credential explains (``creds summary``)."""
    repo = store.credentials
    flags: dict[str, dict[str, Any]] = {}
    for flag, prio, done, n in repo.flag_summary():
        entry = flags.setdefault(flag, {"flag": flag, "priority": prio, "facts": 0, "alerted": 0})
        entry["facts" if done == FACT else "alerted"] += n
        if PRIORITY_ORDER.index(prio) < PRIORITY_ORDER.index(entry["priority"]):
            entry["priority"] = prio
    unknown = [e for e in list_credentials(store, kind="unknown", unaccounted=True)]
    masters = [e["subject"] for e in unknown if "system:masters" in e["groups"]]
    return {"credentials": repo.count(),
            "flags": sorted(flags.values(), key=lambda f: (PRIORITY_ORDER.index(f["priority"]), f["flag"])),
            "unaccounted_identities": len(unknown), "system_masters_identities": masters,
            "top_unaccounted": [{"id": e["id"], "subject": e["subject"], "groups": e["groups"], "uses": e["uses"],
                                 "reason": e["reason"]} for e in unknown[:5]]}


def resolve(store: CredentialReader, ident: str) -> Credential:
    """A credential by id, credential id (``X509SHA256=…``/``JTI=…``), fingerprint, JTI or unique id prefix."""
    doc = store.credentials.doc(ident)
    if doc is None:
        docs = store.credentials.find(ident)
        if not docs and "/" not in ident:  # a JTI prefix, as the `jti/…` ids show it
            docs = store.credentials.find(f"jti/{ident}")
        if len(docs) > 1:
            ids = sorted(decode(d).id for d in docs)
            raise NotFoundError(f"{ident!r} is ambiguous: it matches {len(docs)} credentials ({', '.join(ids[:5])}"
                                f"{' …' if len(ids) > 5 else ''}); give more of it")
        doc = docs[0] if docs else None
    if doc is None:
        raise NotFoundError(f"no credential {ident!r} (see `kubetrail creds list`)")
    return decode(doc)


def show(store: CredentialReader, ident: str, limit: int = 200, now_ns: int | None = None) -> dict[str, Any]:
    """``creds show``: the list entry plus the creation chain, usage statistics and timeline."""
    cred = resolve(store, ident)
    repo = store.credentials
    agg = _agg(repo.aggregate(cred.id))
    out = entry(repo, cred, agg, time.time_ns() if now_ns is None else now_ns)
    out["details"] = cred.details
    out["chain"] = [{"action": s.action, "by": s.by, "time": format_ns(s.time), "auditID": s.audit_id,
                     "stage": s.stage, "leaf_index": s.leaf_index, "key": s.key, "link": s.link, **s.detail}
                    for s in cred.chain]
    out["usage"] = {
        "source_ips": [{"ip": ip, "first_seen": format_ns(i.get("time")), "leaf_index": i.get("leaf_index"),
                        "auditID": i.get("audit_id")} for ip, i in sorted(agg.ips.items(),
                                                                          key=lambda kv: kv[1].get("time", 0))],
        "user_agents": agg.user_agents, "verbs": agg.verbs, "resources": agg.resources,
    }
    rows = repo.uses(cred.id, limit)
    out["timeline"] = [{"time": format_ns(t), "auditID": a, "stage": st, "leaf_index": li, "code": c, "verb": v,
                        "resource": r, "namespace": ns, "name": n, "source_ip": ip, "user_agent": ua, "link": lk}
                       for t, a, st, li, c, v, r, ns, n, ip, ua, lk in rows]
    out["timeline_truncated"] = agg.uses > len(rows)
    return out


def text_table(entries: list[dict[str, Any]]) -> str:
    """A fixed-width summary, riskiest first (``creds list`` without ``--json``, the demo)."""
    head = f"{'ID':<34} {'KIND':<9} {'SUBJECT':<40} {'USES':>6} {'LAST USED':<20} {'EXPIRES':<20} FLAGS"
    lines = [head]
    for e in entries:
        subject = e["subject"] or "?"
        names = [f["flag"] for f in e["flags"]]
        if e["unaccounted"] and "unaccounted" not in names:
            names.append("unaccounted")
        flags = ",".join(names)
        lines.append(f"{e['id'][:34]:<34} {e['kind']:<9} {subject[:40]:<40} {e['uses']:>6} "
                     f"{(e['last_used'] or '-')[:19]:<20} {(e['expires_at'] or '-')[:19]:<20} {flags}")
    return "\n".join(lines)
