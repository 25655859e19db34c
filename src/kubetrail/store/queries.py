"""Search filters and the SQL they become, for every engine and every caller.

The SQL uses ``?`` placeholders (the PostgreSQL adapter rewrites them); JSON arrays
(``groups_json``, ``source_ips``) and substring matches are spelled per ``dialect``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from kubetrail.store.heads import prefix_range, text_head


class QueryFilters(msgspec.Struct, kw_only=True):
    """Each set field narrows the search; lists mean "any of"; times are ns since the epoch.

    In the fields listed in ``GLOB_FIELDS`` a value holding ``*`` or ``?`` is a shell-style pattern
    (SQLite ``GLOB``, case-sensitive; ``[*]`` matches a literal star), so
    ``system:serviceaccount:dev:*`` means every service account of ``dev``. Kubernetes names and
    namespaces cannot hold either character, so exact lookups never turn into patterns.
    ``exclude_*`` drop matching events; ``cluster`` matches the first part of the source label.
    ``kind`` empty means audit events only (log lines are searched with ``LogFilters``), unless
    ``any_kind`` is set (looking a record up by key).
    """

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
    any_kind: bool = False
    stage: list[str] = []
    impersonated_user: list[str] = []
    source: list[str] = []
    cluster: list[str] = []
    exclude_user: list[str] = []
    exclude_verb: list[str] = []
    key_prefix: str = ""
    since: int | None = None
    until: int | None = None
    # keyset paging, newest first: only rows ordered before this (time, leaf_index)
    before: tuple[int, int] | None = None


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
    "stage": "stage",
    "impersonated_user": "impersonated",
    "source": "source",
}
GLOB_FIELDS = frozenset({"user", "namespace", "name", "impersonated_user", "source", "exclude_user"})
# Columns whose index leaves out the records without a value (migration 0012): a filter on them adds
# ``column <> ''`` as its own term, which is what lets SQLite (the term must appear in the query) and
# PostgreSQL (it must be provable from the query) use the partial index. Neither an exact value nor a
# pattern matches '' (a pattern term says so already), so the results are the same.
PARTIAL_INDEXED = frozenset({"audit_id", "credential_id", "namespace", "username", "resource"})
_NOT = {"exclude_user": "username", "exclude_verb": "verb"}


def is_pattern(value: str) -> bool:
    return "*" in value or "?" in value


def _glob(column: str, pattern: str, dialect: str, params: list[Any]) -> str:
    """``column GLOB ?``; PostgreSQL has no GLOB: the same pattern as an anchored POSIX regex."""
    if dialect == "postgres":
        params.append(glob_regex(pattern))
        return f"{column} ~ ?"
    params.append(pattern)
    return f"{column} GLOB ?"


def glob_regex(pattern: str) -> str:
    """A SQLite GLOB pattern (``*``, ``?``, ``[…]``/``[^…]``, case-sensitive, whole value) as a regex."""
    out, i = ["^"], 0
    while i < len(pattern):
        c = pattern[i]
        end = pattern.find("]", i + 2) if c == "[" else -1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif end != -1:
            body = pattern[i + 1:end]
            neg = body.startswith("^")
            body = body[1:] if neg else body
            out.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out) + "$"


def _any_of(column: str, values: list[Any], globs: bool, params: list[Any], dialect: str) -> str:
    """``column IN (…)`` for exact values, OR-ed with one GLOB match per pattern."""
    exact = [v for v in values if not (globs and isinstance(v, str) and is_pattern(v))]
    patterns = [v for v in values if v not in exact]
    terms = []
    if exact:
        terms.append(f"{column} IN ({','.join('?' * len(exact))})")
        params.extend(exact)
    for p in patterns:  # a pattern never matches an empty field ("no namespace", "not impersonated")
        terms.append(f"({_glob(column, p, dialect, params)} AND {column} != '')")
    return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"


def _json_any_of(column: str, n: int, dialect: str) -> str:
    """The JSON array in ``column`` holds any of ``n`` values."""
    marks = ",".join("?" * n)
    if dialect == "postgres":
        return f"EXISTS (SELECT 1 FROM jsonb_array_elements_text({column}::jsonb) AS j(value) WHERE j.value IN ({marks}))"
    return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE value IN ({marks}))"


def where_clause(f: QueryFilters, dialect: str = "sqlite", heads: bool = True) -> tuple[str, list[Any]]:
    """The WHERE of a query; ``heads``: the store has the integer heads of migration 0016 (store/heads.py),
    which a filter on the auditID or a key prefix goes through (the text has no index of its own)."""
    parts: list[str] = []
    params: list[Any] = []
    for field, column in _EQ.items():
        values = getattr(f, field) or (["audit"] if field == "kind" and not f.any_kind else [])
        if values and field == "kind" and not f.kind and dialect == "sqlite":
            # the implied kind = 'audit' holds for most rows: said so, SQLite (which keeps no statistics
            # unless ANALYZE ran) no longer prefers entries_kind_time, i.e. every audit record, to the
            # index of a filter that names a value (--namespace, --credential, --audit-id, --resource)
            parts.append(f"likely({_any_of(column, values, False, params, dialect)})")
        elif values:
            parts.append(_any_of(column, values, field in GLOB_FIELDS, params, dialect))
            if column in PARTIAL_INDEXED and "" not in values:
                parts.append(f"{column} <> ''")
            if field == "audit_id" and heads and "" not in values:
                found = sorted({text_head(str(v)) for v in values})
                parts.append(f"audit_head IN ({','.join('?' * len(found))})")
                params.extend(found)
    for field, column in _NOT.items():
        values = getattr(f, field)
        if values:
            parts.append(f"NOT {_any_of(column, values, field in GLOB_FIELDS, params, dialect)}")
    if f.cluster:
        parts.append("(" + " OR ".join(_glob("source", _glob_literal(c) + "/*", dialect, params)
                                       for c in f.cluster) + ")")
    if f.key_prefix:
        if heads and (span := prefix_range(f.key_prefix)) is not None:
            parts.append("(key_head BETWEEN ? AND ? OR key_head IS NULL)")
            params.extend(span)
        parts.append("key >= ? AND key < ?")
        params.extend([f.key_prefix, f.key_prefix + "\U0010ffff"])
    if f.group:
        parts.append(_json_any_of("groups_json", len(f.group), dialect))
        params.extend(f.group)
    if f.source_ip:
        parts.append(_json_any_of("source_ips", len(f.source_ip), dialect))
        params.extend(f.source_ip)
    if f.user_agent:
        parts.append("strpos(lower(user_agent), lower(?)) > 0" if dialect == "postgres"
                     else "instr(lower(user_agent), lower(?)) > 0")
        params.append(f.user_agent)
    if f.since is not None:
        parts.append("time >= ?")
        params.append(f.since)
    if f.until is not None:
        parts.append("time < ?")
        params.append(f.until)
    if f.before is not None:
        parts.append("(time < ? OR (time = ? AND leaf_index < ?))")
        params += [f.before[0], f.before[0], f.before[1]]
    return ("WHERE " + " AND ".join(parts)) if parts else "", params


def _glob_literal(text: str) -> str:
    """``text`` as a GLOB pattern that matches only itself."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


LOG_KIND_NAMES = ("container", "node", "k8s_event")


class LogFilters(msgspec.Struct, kw_only=True):
    """``kubetrail logs``: each set field narrows, lists mean "any of"; ``pod`` is the pod's name and
    ``workload`` is ``kind/namespace/name``. ``after_leaf`` (``--follow``) keeps leaves above it."""

    kind: list[str] = []
    namespace: list[str] = []
    pod: list[str] = []
    pod_uid: list[str] = []
    workload: list[str] = []
    container: list[str] = []
    node: list[str] = []
    unit: list[str] = []
    stream: list[str] = []
    since: int | None = None
    until: int | None = None
    after_leaf: int | None = None

    def matches(self, m: Any, kind: str, time: int) -> bool:
        """The same test on a decoded record's (leaf-covered) metadata: what ``logs`` re-checks."""
        for field in ("namespace", "pod", "pod_uid", "workload", "container", "node", "unit", "stream"):
            values = getattr(self, field)
            if values and getattr(m, field) not in values:
                return False
        return (kind in (self.kind or LOG_KIND_NAMES) and (self.since is None or time >= self.since)
                and (self.until is None or time < self.until))


# the log columns' partial indexes (migrations 0009, 0012): as PARTIAL_INDEXED above
_LOG_PARTIAL = frozenset({"namespace", "workload", "pod_uid", "node", "unit"})
_LOG_EQ = {"namespace": "namespace", "pod": "name", "pod_uid": "pod_uid", "workload": "workload",
           "container": "container", "node": "node", "unit": "unit", "stream": "stream"}


def log_where_clause(f: LogFilters, dialect: str = "sqlite") -> tuple[str, list[Any]]:  # noqa: ARG001 - same SQL on both
    kinds = f.kind or list(LOG_KIND_NAMES)
    parts = [f"kind IN ({','.join('?' * len(kinds))})"]
    params: list[Any] = list(kinds)
    for field, column in _LOG_EQ.items():
        values = getattr(f, field)
        if values:
            parts.append(f"{column} IN ({','.join('?' * len(values))})")
            params.extend(values)
            if column in _LOG_PARTIAL and "" not in values:
                parts.append(f"{column} <> ''")
    for cond, value in (("time >= ?", f.since), ("time < ?", f.until), ("leaf_index > ?", f.after_leaf)):
        if value is not None:
            parts.append(cond)
            params.append(value)
    return "WHERE " + " AND ".join(parts), params
