"""What the pages and the API ask the store, one page at a time (never a whole table at once).

Listings are newest first with keyset cursors (events: (time, leaf index); alerts: (time, id));
the credential inventory is ranked in memory (riskiest first, as ``creds list``) and paged by
offset. Every function takes plain values so that a page and its ``/api/v1`` twin share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetrail.alerts.alert import Alert
from kubetrail.alerts.store import page_alerts
from kubetrail.credentials.report import list_credentials, show
from kubetrail.errors import InputError
from kubetrail.record import Record
from kubetrail.store.api import Store
from kubetrail.store.queries import QueryFilters
from kubetrail.timefmt import format_ns, parse_when
from kubetrail.web.documents import decode_cursor, encode_cursor

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
# The search form's fields: name -> (QueryFilters field, is a list of ints)
SEARCH_FIELDS = {"user": "user", "group": "group", "verb": "verb", "resource": "resource",
                 "subresource": "subresource", "namespace": "namespace", "name": "name", "code": "code",
                 "source_ip": "source_ip", "audit_id": "audit_id", "credential_id": "credential_id", "kind": "kind"}
TIMELINE_ENTITIES = ("user", "serviceaccount", "credential", "namespace", "pod", "workload")


@dataclass
class Page:
    items: list[Any]
    next: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def limit_of(params: Mapping[str, str]) -> int:
    raw = params.get("limit") or str(DEFAULT_LIMIT)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InputError(f"limit: a number from 1 to {MAX_LIMIT}")
    return int(raw)


def when(params: Mapping[str, str], name: str) -> int | None:
    text = (params.get(name) or "").strip()
    if not text:
        return None
    try:
        return parse_when(text)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from exc
    except (ValueError, OverflowError) as exc:
        raise InputError(f"{name}: {text!r} is not an RFC 3339 time or a duration such as 2h") from exc


def search_filters(params: Mapping[str, str]) -> QueryFilters:
    """The ``query`` filters from a form or query string; commas separate alternatives."""
    values: dict[str, Any] = {}
    for name, target in SEARCH_FIELDS.items():
        parts = [p.strip() for p in (params.get(name) or "").split(",") if p.strip()]
        if not parts:
            continue
        if name == "code":
            if not all(p.isdigit() and len(p) <= 3 for p in parts):
                raise InputError("code: HTTP status codes such as 403")
            values[target] = [int(p) for p in parts]
        else:
            values[target] = parts
    return QueryFilters(**values, user_agent=(params.get("user_agent") or "").strip(),
                        since=when(params, "since"), until=when(params, "until"))


def events_page(store: Store, filters: QueryFilters, limit: int, cursor: str | None) -> Page:
    if cursor:
        t, leaf = decode_cursor(cursor, (int, int))
        filters.before = (t, leaf)
    rows = list(store.query(filters, limit=limit + 1, order="DESC"))
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return Page(rows, encode_cursor(last.time, last.leaf_index or 0) if more and last else None)


def alerts_page(store: Store, params: Mapping[str, str], limit: int, cursor: str | None) -> Page:
    before = None
    if cursor:
        t, aid = decode_cursor(cursor, (int, int))
        before = (t, aid)
    alerts = page_alerts(store, rule=params.get("rule") or None, min_priority=params.get("priority") or None,
                         subject=params.get("subject") or None, since=when(params, "since"),
                         until=when(params, "until"), before=before, limit=limit + 1)
    more = len(alerts) > limit
    alerts = alerts[:limit]
    last = alerts[-1] if alerts else None
    return Page(alerts, encode_cursor(last.time, last.id or 0) if more and last else None)


def credentials_page(store: Store, params: Mapping[str, str], limit: int, cursor: str | None) -> Page:
    offset = decode_cursor(cursor, (int,))[0] if cursor else 0
    state = params.get("state") or None
    if state not in (None, "active", "expired"):
        raise InputError("state: active or expired")
    entries = list_credentials(store, kind=params.get("kind") or None, state=state,
                               unaccounted=params.get("unaccounted") in ("1", "true", "on"))
    items = entries[offset:offset + limit]
    more = offset + limit < len(entries)
    return Page(items, encode_cursor(offset + limit) if more else None, {"total": len(entries)})


def uses_chart(store: Store, doc: dict[str, Any], bars: int = 40) -> list[dict[str, Any]]:
    """Uses over time in ``bars`` equal buckets from the first to the last use (empty ones included)."""
    first, last = doc.get("first_used_ns"), doc.get("last_used_ns")
    if first is None or last is None:
        return []
    bucket = max((last - first) // bars + 1, 10**9)
    counts = {t: (n, d) for t, n, d in store.credentials.use_histogram(doc["id"], first, bucket)}
    return [{"start": format_ns(t), "start_ns": t, "uses": counts.get(t, (0, 0))[0], "denied": counts.get(t, (0, 0))[1]}
            for t in range(first, last + 1, bucket)]


def credential_detail(store: Store, ident: str) -> dict[str, Any]:
    """``creds show --json`` (the API returns exactly this), plus the page's chart and alerts."""
    return show(store, ident)


def credential_extras(store: Store, doc: dict[str, Any]) -> dict[str, Any]:
    first, last = store.credentials.uses(doc["id"], 1), store.credentials.uses(doc["id"], 1, True)
    doc = {**doc, "first_used_ns": first[0][0] if first else None, "last_used_ns": last[0][0] if last else None}
    related = page_alerts(store, subject=doc["subject"], limit=50) if doc.get("subject") else []
    mentioned = [a for a in page_alerts(store, limit=200)
                 if doc["id"] in str(a.fields) and a.id not in {r.id for r in related}]
    return {"chart": uses_chart(store, doc), "alerts": related + mentioned}


def timeline_filters(entity: str, value: str) -> QueryFilters:
    """Which stored records belong to one user, service account, credential, namespace, pod or workload."""
    value = value.strip()
    if not value:
        raise InputError("timeline: a value is needed (a user name, namespace/name, a credential id…)")
    if entity == "user":
        return QueryFilters(user=[value])
    if entity == "serviceaccount":
        full = value if value.startswith("system:serviceaccount:") else "system:serviceaccount:" + value.replace("/", ":")
        return QueryFilters(user=[full])
    if entity == "credential":
        return QueryFilters(credential_id=[value])
    if entity == "namespace":
        return QueryFilters(namespace=[value])
    if entity in ("pod", "workload"):
        ns, _, name = value.rpartition("/")
        if not ns or not name:
            raise InputError(f"timeline: a {entity} is written NAMESPACE/NAME")
        return QueryFilters(namespace=[ns], name=[name])
    raise InputError(f"timeline: entity is one of {', '.join(TIMELINE_ENTITIES)}")


def timeline_page(store: Store, entity: str, value: str, limit: int, cursor: str | None) -> Page:
    """Records of the entity (audit events; container/node log lines from the agent carry namespace
    and pod too) mixed with the alerts about it, newest first."""
    filters = timeline_filters(entity, value)
    if entity == "credential":
        try:
            doc = show(store, value, limit=1)
            filters = QueryFilters(credential_id=[doc["credential_id"] or value])
        except InputError:
            pass
    events = events_page(store, filters, limit, cursor)
    rows: list[tuple[int, str, Record | Alert]] = [(r.time, "event", r) for r in events.items]
    if events.items:
        lo, hi = events.items[-1].time, events.items[0].time + 1
        keys = {r.key for r in events.items}
        for a in page_alerts(store, since=lo, until=hi, limit=MAX_LIMIT):
            if a.subject == value or a.subject in filters.user or keys & {e.key for e in a.evidence}:
                rows.append((a.time, "alert", a))
    rows.sort(key=lambda x: (x[0], x[1] == "alert"), reverse=True)
    return Page(rows, events.next)
