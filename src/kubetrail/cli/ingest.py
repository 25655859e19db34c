"""`kubetrail ingest`, `query`, `show`, `stats`: files in, questions answered."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import orjson

from kubetrail.cli.options import data_option, json_option
from kubetrail.errors import InputError
from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import Record, SourceRef, printable
from kubetrail.sources.files import Input, expand_paths
from kubetrail.store import QueryFilters, open_store
from kubetrail.store.rows import MAX_INDEX
from kubetrail.timefmt import format_ns, parse_when

PROGRESS_MIN_BYTES = 8 * 1024 * 1024


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--cluster", default="", help="Cluster name recorded as the events' source.")
@click.option("--stream", default="", help="Source stream label (default: the file name).")
@click.option("--no-detect", is_flag=True, help="Store only; run no detection.")
@click.option("--no-progress", is_flag=True, help="Never show the progress bar.")
@json_option
@data_option
def ingest(paths: tuple[str, ...], cluster: str, stream: str, no_detect: bool, no_progress: bool,
           as_json: bool, data_dir: str) -> None:
    """Read audit events from files, directories, .gz files or - (stdin), in any delivery format.

    Exits 0 when everything was stored (or already was), 1 when some input was rejected: the
    rejects are listed with their position and reason in DATA/rejects.jsonl.
    """
    files = expand_paths(paths)
    pipe = open_pipeline(Options(data_dir=data_dir, cluster=cluster, detect=not no_detect))
    total = sum(os.path.getsize(p) for p in files if p != "-")
    show = not no_progress and sys.stderr.isatty() and total >= PROGRESS_MIN_BYTES
    try:
        with click.progressbar(length=max(total, 1), label="ingesting", file=sys.stderr,
                               hidden=not show) as bar:
            for path in files:
                inp = Input(path)
                # a file name that is not UTF-8 is escaped here, once, not per record
                source = SourceRef(cluster=cluster, node="", stream=printable(stream or f"file:{path}"))
                last = 0

                def tick(_n: int, inp: Input = inp) -> None:
                    nonlocal last
                    pos = inp.tell()
                    bar.update(max(pos - last, 0))
                    last = pos

                try:
                    pipe.ingest_items(inp.items(), source, progress=tick)
                finally:
                    inp.close()
    finally:
        pipe.close()
        pipe.store.close()
    s = pipe.summary
    if as_json:
        click.echo(orjson.dumps({"read": s.read, "stored": s.stored, "duplicates": s.duplicates,
                                 "rejected": s.rejected, "seconds": round(s.seconds, 3)}).decode())
    else:
        click.echo(s.line())
    if s.rejected:
        click.echo(f"rejected input is listed with position and reason in {data_dir}/rejects.jsonl", err=True)
    if s.rejected:
        sys.exit(1)


def _when(text: str | None, flag: str) -> int | None:
    """A time filter, refused when it does not fit a 64-bit nanosecond count (999999999d)."""
    if not text:
        return None
    try:
        value = parse_when(text)
    except OverflowError:
        value = MAX_INDEX + 1
    if not -MAX_INDEX <= value <= MAX_INDEX:
        raise InputError(f"{flag} {text!r} is out of range")
    return value


def record_row(r: Record) -> dict[str, Any]:
    """The public JSON shape of one stored event (a contract: add fields, never rename)."""
    m = r.meta
    return {
        "key": r.key,
        "leaf_index": r.leaf_index,
        "time": format_ns(r.time),
        "auditID": m.audit_id,
        "stage": m.stage,
        "verb": m.verb,
        "user": m.user,
        "groups": m.groups,
        "impersonatedUser": m.impersonated_user or None,
        "resource": m.resource,
        "subresource": m.subresource,
        "apiGroup": m.api_group,
        "namespace": m.namespace,
        "name": m.name,
        "code": m.code,
        "sourceIPs": m.source_ips,
        "userAgent": m.user_agent,
        "requestURI": m.request_uri,
        "credentialID": m.credential_id or None,
        "source": r.source.label(),
        "format": r.format,
    }


@click.command()
@click.option("--user", multiple=True, help="Username (repeat for any of several).")
@click.option("--group", multiple=True, help="Any of the user's groups.")
@click.option("--verb", multiple=True)
@click.option("--resource", multiple=True)
@click.option("--subresource", multiple=True)
@click.option("--namespace", multiple=True)
@click.option("--name", multiple=True)
@click.option("--code", multiple=True, type=int, help="HTTP status code.")
@click.option("--source-ip", multiple=True, help="Any of the event's sourceIPs.")
@click.option("--user-agent", default="", help="Substring of the user agent (case-insensitive).")
@click.option("--since", default=None, help="RFC 3339 time or a duration ago (90m, 2h, 7d).")
@click.option("--until", default=None, help="RFC 3339 time or a duration ago.")
@click.option("--limit", type=int, default=None, help="At most this many events.")
@click.option("--count", "count_only", is_flag=True, help="Print only the number of matching events.")
@json_option
@data_option
def query(user: tuple[str, ...], group: tuple[str, ...], verb: tuple[str, ...], resource: tuple[str, ...],
          subresource: tuple[str, ...], namespace: tuple[str, ...], name: tuple[str, ...], code: tuple[int, ...],
          source_ip: tuple[str, ...], user_agent: str, since: str | None, until: str | None, limit: int | None,
          count_only: bool, as_json: bool, data_dir: str) -> None:
    """Search stored audit events; filters combine with AND, repeated values with OR."""
    filters = QueryFilters(
        user=list(user), group=list(group), verb=list(verb), resource=list(resource),
        subresource=list(subresource), namespace=list(namespace), name=list(name), code=list(code),
        source_ip=list(source_ip), user_agent=user_agent,
        since=_when(since, "--since"), until=_when(until, "--until"),
    )
    store = open_store(data_dir, readonly=True)
    try:
        if count_only:
            click.echo(str(store.count_matching(filters)))
            return
        out = sys.stdout
        for r in store.query(filters, limit=limit):
            if as_json:
                out.write(orjson.dumps(record_row(r)).decode() + "\n")
            else:
                m = r.meta
                target = "/".join(p for p in (m.namespace, m.resource, m.name) if p) or m.request_uri
                sub = f"/{m.subresource}" if m.subresource else ""
                out.write(f"{format_ns(r.time)}  #{r.leaf_index:<7} {m.code or '-':>3} {m.verb:<7} "
                          f"{target}{sub}  {m.user}  [{','.join(m.source_ips)}]\n")
    finally:
        store.close()


@click.command()
@click.argument("key")
@json_option
@data_option
def show(key: str, as_json: bool, data_dir: str) -> None:
    """Print one stored record (by key or leaf index): its metadata and its redacted body."""
    store = open_store(data_dir, readonly=True)
    try:
        r = store.get(key)
    finally:
        store.close()
    if r is None:
        click.echo(f"error: no stored record with key or leaf index {key!r}", err=True)
        sys.exit(1)
    doc = record_row(r)
    doc["redactions"] = [{"path": x.path, "sha256_prefix": x.sha256_prefix, "what": x.what} for x in r.redactions]
    doc["lossy"] = r.meta.lossy
    doc["event"] = orjson.loads(r.body) if r.body else None
    if as_json:
        click.echo(orjson.dumps(doc).decode())
    else:
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


@click.command()
@json_option
@data_option
def stats(as_json: bool, data_dir: str) -> None:
    """Counts of what the store holds: entries, ingest counters, top users, verbs, resources."""
    store = open_store(data_dir, readonly=True)
    try:
        s = store.stats()
    finally:
        store.close()
    s["first_time"], s["last_time"] = format_ns(s["first_time"]), format_ns(s["last_time"])
    if as_json:
        click.echo(orjson.dumps(s).decode())
        return
    click.echo(f"entries      {s['entries']:,} (bodies kept {s['bodies_kept']:,})")
    click.echo(f"time span    {s['first_time']} .. {s['last_time']}")
    for k, v in sorted(s["counters"].items()):
        click.echo(f"{k:<12} {v:,}")
    for col in ("source", "format", "verb", "resource", "username"):
        top = ", ".join(f"{name or '-'} ({n})" for name, n in s[f"top_{col}"][:5])
        click.echo(f"top {col:<8} {top}")


commands: list[click.Command] = [ingest, query, show, stats]
