"""Search filters and the SQL they become, shared by every engine and every caller."""

from __future__ import annotations

from typing import Any

import msgspec


class QueryFilters(msgspec.Struct, kw_only=True):
    """Each set field narrows the search; lists mean "any of"; times are ns since the epoch."""

    user: list[str] = []
    group: list[str] = []
    verb: list[str] = []
    resource: list[str] = []
    subresource: list[str] = []
    namespace: list[str] = []
    name: list[str] = []
    code: list[int] = []
    source_ip: list[str] = []
    user_agent: str = ""
    audit_id: list[str] = []
    credential_id: list[str] = []
    kind: list[str] = []
    since: int | None = None
    until: int | None = None


_EQ = {
    "user": "username",
    "verb": "verb",
    "resource": "resource",
    "subresource": "subresource",
    "namespace": "namespace",
    "name": "name",
    "code": "code",
    "audit_id": "audit_id",
    "credential_id": "credential_id",
    "kind": "kind",
}


def where_clause(f: QueryFilters) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    for field, column in _EQ.items():
        values = getattr(f, field)
        if values:
            parts.append(f"{column} IN ({','.join('?' * len(values))})")
            params.extend(values)
    if f.group:
        parts.append(f"EXISTS (SELECT 1 FROM json_each(groups_json) WHERE value IN ({','.join('?' * len(f.group))}))")
        params.extend(f.group)
    if f.source_ip:
        parts.append(f"EXISTS (SELECT 1 FROM json_each(source_ips) WHERE value IN ({','.join('?' * len(f.source_ip))}))")
        params.extend(f.source_ip)
    if f.user_agent:
        parts.append("instr(lower(user_agent), lower(?)) > 0")
        params.append(f.user_agent)
    if f.since is not None:
        parts.append("time >= ?")
        params.append(f.since)
    if f.until is not None:
        parts.append("time < ?")
        params.append(f.until)
    return ("WHERE " + " AND ".join(parts)) if parts else "", params
