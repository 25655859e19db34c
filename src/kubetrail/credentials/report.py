"""Read side of the inventory: the public JSON shapes of ``creds list`` and ``creds show``, and the
text the CLI and ``kubetrail demo`` print. The JSON keys are a contract: add, never rename.

Listing reads only ``credentials``, ``credential_aggregates`` and ``credential_flags`` (no scan of
uses), so it stays fast however busy a credential was; ``show`` adds the usage timeline.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from kubetrail.credentials.flags import gap_notes
from kubetrail.credentials.ledger import Aggregate
from kubetrail.credentials.model import Credential, decode
from kubetrail.errors import InputError
from kubetrail.timefmt import format_ns

PRIORITY_ORDER = ("Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug")
USE_EVIDENCE = 10  # first and last uses named in a list entry's evidence


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


def _flags(conn: Any, cid: str) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT flag, priority, explanation, time, audit_id, leaf_index, alert_id FROM credential_flags "
                        "WHERE credential = ?", (cid,)).fetchall()
    out = [{"flag": f, "priority": p, "explanation": e, "time": format_ns(t) if t else None, "auditID": a,
            "leaf_index": li, "alert_id": al} for f, p, e, t, a, li, al in rows]
    return sorted(out, key=lambda f: (PRIORITY_ORDER.index(f["priority"]) if f["priority"] in PRIORITY_ORDER else 9,
                                      f["flag"]))


def _use_evidence(conn: Any, cid: str, agg: Aggregate) -> list[dict[str, Any]]:
    sql = ("SELECT audit_id, leaf_index, link FROM credential_uses WHERE credential = ? ORDER BY time {}, leaf_index {} "
           f"LIMIT {USE_EVIDENCE}")
    first = conn.execute(sql.format("ASC", "ASC"), (cid,)).fetchall()
    last = conn.execute(sql.format("DESC", "DESC"), (cid,)).fetchall() if agg.uses > USE_EVIDENCE else []
    seen, out = set(), []
    for a, li, link in first + last[::-1]:
        if li not in seen:
            seen.add(li)
            out.append({"auditID": a, "leaf_index": li, "link": link})
    return out


def entry(conn: Any, cred: Credential, agg: Aggregate, now_ns: int) -> dict[str, Any]:
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
        "flags": _flags(conn, cred.id),
        "policy_gaps": gap_notes(cred),
        "evidence": {
            "creation": [{"action": s.action, "auditID": s.audit_id, "leaf_index": s.leaf_index, "link": s.link}
                         for s in cred.chain],
            "uses": _use_evidence(conn, cred.id, agg),
        },
    }


def _rank(e: dict[str, Any]) -> tuple[Any, ...]:
    """Worst flag first; then more serious (Warning or worse) flags; then unaccounted; then most used."""
    levels = [PRIORITY_ORDER.index(f["priority"]) for f in e["flags"] if f["priority"] in PRIORITY_ORDER]
    serious = sum(1 for level in levels if level <= PRIORITY_ORDER.index("Warning"))
    return (min(levels, default=9), -serious, not e["unaccounted"], -(e["uses"] or 0), e["id"])


def list_credentials(store: Any, kind: str | None = None, state: str | None = None, unaccounted: bool = False,
                     now_ns: int | None = None) -> list[dict[str, Any]]:
    """Every credential, riskiest first (see ``_rank``)."""
    now = time.time_ns() if now_ns is None else now_ns
    conn = store.connection
    sql = ("SELECT c.doc, a.uses, a.exact_uses, a.probable_uses, a.denied, a.first_used, a.last_used, a.stats "
           "FROM credentials c LEFT JOIN credential_aggregates a ON a.credential = c.id")
    params: list[Any] = []
    where = []
    if kind:
        where.append("c.kind = ?")
        params.append(kind)
    if unaccounted:
        where.append("c.accounted = 0")
    if where:
        sql += " WHERE " + " AND ".join(where)
    out = []
    for row in conn.execute(sql, params).fetchall():
        cred = decode(row[0])
        e = entry(conn, cred, _agg(row[1:] if row[1] is not None else None), now)
        if state and e["state"] != state:
            continue
        out.append(e)
    return sorted(out, key=_rank)


def resolve(store: Any, ident: str) -> Credential:
    """A credential by id, credential id (``X509SHA256=…``/``JTI=…``), fingerprint, JTI or unique id prefix."""
    conn = store.connection
    row = conn.execute("SELECT doc FROM credentials WHERE id = ?", (ident,)).fetchone()
    if row is None:
        rows = conn.execute(
            "SELECT doc FROM credentials WHERE credential_id = ? OR credential_id = ? OR credential_id = ? "
            "OR id LIKE ? OR credential_id LIKE ?",
            (ident, f"X509SHA256={ident.lower()}", f"JTI={ident}", ident + "%", f"X509SHA256={ident.lower()}%"),
        ).fetchall()
        if len(rows) > 1:
            ids = sorted(decode(r[0]).id for r in rows)
            raise InputError(f"{ident!r} matches {len(rows)} credentials: {', '.join(ids[:5])} …")
        row = rows[0] if rows else None
    if row is None:
        raise InputError(f"no credential {ident!r} (see `kubetrail creds list`)")
    return decode(row[0])


def show(store: Any, ident: str, limit: int = 200, now_ns: int | None = None) -> dict[str, Any]:
    """``creds show``: the list entry plus the creation chain, usage statistics and timeline."""
    cred = resolve(store, ident)
    conn = store.connection
    row = conn.execute("SELECT uses, exact_uses, probable_uses, denied, first_used, last_used, stats "
                       "FROM credential_aggregates WHERE credential = ?", (cred.id,)).fetchone()
    agg = _agg(row)
    out = entry(conn, cred, agg, time.time_ns() if now_ns is None else now_ns)
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
    rows = conn.execute("SELECT time, audit_id, stage, leaf_index, code, verb, resource, namespace, name, source_ip, "
                        "user_agent, link FROM credential_uses WHERE credential = ? ORDER BY time, leaf_index LIMIT ?",
                        (cred.id, limit)).fetchall()
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
