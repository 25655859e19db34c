"""`kubetrail query`, `show`, `stats`: questions answered from the store.

This module loads only the store (no pipeline, no detection), so a query starts in well under
150 ms; `tests/unit/cli/test_startup.py` keeps it that way.
"""

from __future__ import annotations

from typing import Any

import click
import orjson

from kubetrail.cli.options import json_option, store_options
from kubetrail.cli.output import Column, Listing, output_option, with_time
from kubetrail.cli.resolve import open_read, resolve_record, when
from kubetrail.record import LogMeta
from kubetrail.store.queries import QueryFilters
from kubetrail.web.documents import record_document

STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")


# The public JSON shape of one stored event: ONE serialisation with /api/v1/events (web/documents.py).
record_row = record_document


def who(row: dict[str, Any]) -> str:
    """``kubernetes-admin as bob`` when the request was impersonated, else the user."""
    user = row.get("user") or "-"
    return f"{user} as {row['impersonatedUser']}" if row.get("impersonatedUser") else user


def target(row: dict[str, Any]) -> str:
    parts = "/".join(p for p in (row["namespace"], row["resource"], row["name"]) if p) or row["requestURI"]
    return parts + (f"/{row['subresource']}" if row["subresource"] else "")


EVENT_COLUMNS = [
    Column("time", "time", time=True),
    Column("leaf", "leaf_index", right=True),
    Column("key", "key", id=True, wide=True),
    Column("stage", lambda r: _short_stage(r["stage"])),
    Column("code", "code", right=True),
    Column("verb", "verb"),
    Column("target", target),
    Column("user", who),
    Column("source ips", "sourceIPs"),
    Column("audit id", "auditID", id=True, wide=True),
    Column("source", "source", wide=True),
    Column("user agent", "userAgent", wide=True),
]


def _short_stage(stage: str) -> str:
    """The stage in a table: `Complete`, `Started`, `Received`, `Panic` (JSON keeps the full name)."""
    for prefix in ("Response", "Request"):
        if stage.startswith(prefix) and stage != prefix:
            return stage[len(prefix):]
    return stage


@click.command()
@click.option("--user", multiple=True, help="Username; * and ? are wildcards (system:serviceaccount:dev:*).")
@click.option("--exclude-user", multiple=True, help="Leave out this user (wildcards too); repeatable.")
@click.option("--impersonated-user", multiple=True, help="The user a request impersonated (wildcards too).")
@click.option("--group", multiple=True, help="Any of the user's groups.")
@click.option("--verb", multiple=True)
@click.option("--exclude-verb", multiple=True, help="Leave out this verb (e.g. watch); repeatable.")
@click.option("--resource", multiple=True)
@click.option("--subresource", multiple=True)
@click.option("--namespace", multiple=True, help="Namespace; wildcards too.")
@click.option("--name", multiple=True, help="Object name; wildcards too.")
@click.option("--code", multiple=True, type=int, help="HTTP status code.")
@click.option("--stage", multiple=True, type=click.Choice(STAGES), help="Audit stage.")
@click.option("--audit-id", multiple=True, help="The event's auditID (all its stages).")
@click.option("--credential", "credential_id", multiple=True,
              help="The credential id the apiserver recorded (X509SHA256=… or JTI=…).")
@click.option("--source-ip", multiple=True, help="Any of the event's sourceIPs.")
@click.option("--user-agent", default="", help="Substring of the user agent (case-insensitive).")
@click.option("--source", multiple=True, help="Where it was read: a source label such as demo/node-a/audit-file "
                                              "(wildcards too).")
@click.option("--cluster", multiple=True, help="Cluster name the events were recorded under.")
@click.option("--since", default=None, help="RFC 3339 time or a duration ago (90m, 2h, 7d).")
@click.option("--until", default=None, help="RFC 3339 time or a duration ago.")
@click.option("--order", type=click.Choice(["oldest", "newest"]), default="oldest", show_default=True,
              help="Oldest first (a story) or newest first (what just happened).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many events.")
@click.option("--count", "count_only", is_flag=True, help="Print only the number of matching events.")
@output_option
@store_options
def query(user: tuple[str, ...], exclude_user: tuple[str, ...], impersonated_user: tuple[str, ...],
          group: tuple[str, ...], verb: tuple[str, ...], exclude_verb: tuple[str, ...], resource: tuple[str, ...],
          subresource: tuple[str, ...], namespace: tuple[str, ...], name: tuple[str, ...], code: tuple[int, ...],
          stage: tuple[str, ...], audit_id: tuple[str, ...], credential_id: tuple[str, ...],
          source_ip: tuple[str, ...], user_agent: str, source: tuple[str, ...], cluster: tuple[str, ...],
          since: str | None, until: str | None, order: str, limit: int | None, count_only: bool, output: str,
          data_dir: str, location: str) -> None:
    """Search stored audit events; filters combine with AND, repeated values with OR.

    The table shows the stage (Received, Started, Complete, Panic) and, for an impersonated
    request, who asked as whom ("kubernetes-admin as bob"). -o json prints every field, one event
    per line; --count prints only the number.
    """
    filters = QueryFilters(
        user=list(user), exclude_user=list(exclude_user), impersonated_user=list(impersonated_user),
        group=list(group), verb=list(verb), exclude_verb=list(exclude_verb), resource=list(resource),
        subresource=list(subresource), namespace=list(namespace), name=list(name), code=list(code),
        stage=list(stage), audit_id=list(audit_id), credential_id=list(credential_id), source_ip=list(source_ip),
        user_agent=user_agent, source=list(source), cluster=list(cluster),
        since=when(since, "--since"), until=when(until, "--until"),
    )
    with open_read(location, data_dir) as store:
        if count_only:
            click.echo(str(store.count_matching(filters)))
            return
        with Listing(output, EVENT_COLUMNS) as out:
            for r in store.query(filters, limit=limit, order="DESC" if order == "newest" else "ASC"):
                out.add(record_row(r))


@click.command()
@click.argument("key")
@json_option
@store_options
def show(key: str, as_json: bool, data_dir: str, location: str) -> None:
    """Print one stored record (by key, key prefix or leaf index): its metadata and its redacted body.

    KEY is a record key or a unique prefix of one (at least 4 hex digits, as the 12-character keys
    in `query -o table` output), or a leaf index (a number, or #N).
    """
    with open_read(location, data_dir) as store:
        r = resolve_record(store, key)
    if isinstance(r.meta, LogMeta):  # a log line (kubetrail logs): its row, and the body as stored
        from kubetrail.cli.logs import log_row

        doc = log_row(r)
        doc["event"] = orjson.loads(r.body) if r.body and r.format in ("journald", "k8s_event") else None
    else:
        doc = record_row(r)
        doc["lossy"] = r.meta.lossy
        doc["event"] = orjson.loads(r.body) if r.body else None
    doc["redactions"] = [{"path": x.path, "what": x.what,
                          **({"hmac": x.hmac} if x.hmac else {"sha256_prefix": x.sha256_prefix})}
                         for x in r.redactions]
    if as_json:
        click.echo(orjson.dumps(doc).decode())
    else:
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


@click.command()
@json_option
@store_options
def stats(as_json: bool, data_dir: str, location: str) -> None:
    """Counts of what the store holds: entries, ingest counters, top users, verbs, resources."""
    with open_read(location, data_dir) as store:
        s = store.stats()
    first, last = s["first_time"], s["last_time"]
    with_time(s, "first_time", first)
    with_time(s, "last_time", last)
    if as_json:
        click.echo(orjson.dumps(s).decode())
        return
    click.echo(f"entries      {s['entries']:,} (bodies kept {s['bodies_kept']:,})")
    click.echo(f"time span    {s['first_time']} .. {s['last_time']}")
    for k, v in sorted(s["counters"].items()):
        click.echo(f"{k:<12} {v:,}")
    for col in ("kind", "source", "format", "verb", "resource", "username", "workload", "node", "unit"):
        if s.get(f"top_{col}"):
            top = ", ".join(f"{name or '-'} ({n})" for name, n in s[f"top_{col}"][:5])
            click.echo(f"top {col:<8} {top}")


commands: list[click.Command] = [query, show, stats]
