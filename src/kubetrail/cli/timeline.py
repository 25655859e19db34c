"""``kubetrail timeline``: one subject's story, in time order — its requests, the alerts they raised,
and the credential changes around them.

An investigator otherwise runs `query`, `alerts` and `creds show` and merges three lists by eye.
The subject is one of a user (as themselves or impersonated), a credential, a namespace or a pod.
Every line carries the leaf index of its trail record, so each step can be proven
(`kubetrail proof inclusion`).
"""

from __future__ import annotations

from typing import Any

import click

from kubetrail.cli.options import store_options
from kubetrail.cli.output import Column, Listing, output_option, with_time
from kubetrail.cli.query import record_row, target, who
from kubetrail.cli.resolve import open_read, when
from kubetrail.errors import NotFoundError
from kubetrail.record import Record
from kubetrail.store import QueryFilters, Store

DEFAULT_LIMIT = 1000

COLUMNS = [
    Column("time", "time", time=True),
    Column("kind", "kind"),
    Column("leaf", "leaf_index", right=True),
    Column("what", "what"),
    Column("who", "who"),
]


def _event(r: Record) -> dict[str, Any]:
    row = record_row(r)
    code = row["code"] if row["code"] is not None else "-"
    stage = "" if row["stage"] in ("ResponseComplete", "") else f" ({row['stage']})"
    what = f"{code} {row['verb']} {target(row)}{stage}"
    ips = ",".join(row["sourceIPs"])
    return {"time_ns": r.time, "kind": "request", "leaf_index": r.leaf_index, "what": what,
            "who": who(row) + (f" [{ips}]" if ips else ""), "event": row}


def _alert(a: Any) -> dict[str, Any]:
    doc = a.to_json()
    leaves = [e["leaf_index"] for e in doc["evidence"] if e.get("leaf_index") is not None]
    return {"time_ns": a.time, "kind": "alert", "leaf_index": leaves[0] if leaves else None,
            "what": f"{a.priority} {a.rule} (alert {a.id})", "who": a.subject, "alert": doc}


def _step(cred: Any, s: Any) -> dict[str, Any]:
    return {"time_ns": s.time, "kind": "credential", "leaf_index": s.leaf_index,
            "what": f"{cred.kind} {cred.id}: {s.action}" + (" (probable)" if s.link == "probable" else ""),
            "who": s.by, "credential": {"id": cred.id, "kind": cred.kind, "subject": cred.subject,
                                        "action": s.action, "auditID": s.audit_id, "link": s.link}}


def _events(store: Store, filters: list[QueryFilters], limit: int) -> tuple[list[Record], bool]:
    seen: dict[int | None, Record] = {}
    more = False
    for f in filters:
        rows = list(store.query(f, limit=limit + 1))
        more = more or len(rows) > limit
        for r in rows[:limit]:
            seen[r.leaf_index] = r
    found = sorted(seen.values(), key=lambda r: (r.time, r.leaf_index or 0))
    return found[:limit], more or len(found) > limit


def _credentials_of_user(store: Store, user: str) -> list[Any]:
    from kubetrail.credentials.report import list_credentials, resolve

    return [resolve(store, e["id"]) for e in list_credentials(store)
            if user in (e["subject"], e["created_by"], e["approved_by"], e["denied_by"])]


@click.command("timeline")
@click.option("--user", default=None, help="A user: what they did, also when impersonated (wildcards too).")
@click.option("--credential", "credential", default=None,
              help="A credential (as `creds show` takes it): its creation chain and every use.")
@click.option("--namespace", default=None, help="A namespace: every request in it.")
@click.option("--pod", default=None, metavar="NS/NAME", help="A pod: its creation, exec, logs, deletion.")
@click.option("--since", default=None, help="RFC 3339 time or a duration ago (90m, 2h, 7d).")
@click.option("--until", default=None, help="RFC 3339 time or a duration ago.")
@click.option("--limit", type=click.IntRange(min=1), default=DEFAULT_LIMIT, show_default=True,
              help="At most this many requests (alerts and credential steps come on top).")
@output_option
@store_options
def timeline(user: str | None, credential: str | None, namespace: str | None, pod: str | None, since: str | None,
             until: str | None, limit: int, output: str, data_dir: str, location: str) -> None:
    """Print one story in time order: a subject's requests, the alerts they raised, credential changes.

    Give exactly one of --user, --credential, --namespace or --pod. Each line has the leaf index of
    its trail record; -o json prints one object per line with the full event, alert or step.
    """
    chosen = [name for name, v in (("--user", user), ("--credential", credential), ("--namespace", namespace),
                                   ("--pod", pod)) if v]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --user, --credential, --namespace or --pod"
                               + (f" (got {' and '.join(chosen)})" if chosen else ""))
    span = {"since": when(since, "--since"), "until": when(until, "--until")}
    if pod is not None:
        ns, _, name = pod.partition("/")
        if not ns or not name:
            raise click.BadParameter(f"{pod!r} is not NAMESPACE/NAME", param_hint="--pod")
    with open_read(location, data_dir) as store:
        creds: list[Any] = []
        if user is not None:
            filters = [QueryFilters(user=[user], **span), QueryFilters(impersonated_user=[user], **span)]
            creds = _credentials_of_user(store, user)
        elif credential is not None:
            from kubetrail.credentials.report import resolve

            cred = resolve(store, credential)
            creds = [cred]
            leaves = [row[3] for row in store.credentials.uses(cred.id, limit)]
            filters = []
        elif namespace is not None:
            filters = [QueryFilters(namespace=[namespace], **span)]
        else:
            filters = [QueryFilters(namespace=[ns], resource=["pods"], name=[name], **span)]
        if credential is not None:
            records = [r for r in (store.get(str(li)) for li in leaves if li is not None) if r is not None]
            more = len(leaves) >= limit
        else:
            records, more = _events(store, filters, limit)
        if not records and not creds:
            raise NotFoundError(f"nothing in the store for {chosen[0]} {user or credential or namespace or pod!r}")
        leaf_set = {r.leaf_index for r in records}
        from kubetrail.alerts.store import list_alerts

        alerts = [a for a in list_alerts(store)
                  if any(e.leaf_index in leaf_set for e in a.evidence) or (user is not None and a.subject == user)]
    items = [_event(r) for r in records] + [_alert(a) for a in alerts]
    items += [_step(c, s) for c in creds for s in c.chain if s.time]
    lo, hi = span["since"], span["until"]
    items = [i for i in items if (lo is None or i["time_ns"] >= lo) and (hi is None or i["time_ns"] < hi)]
    order = {"credential": 0, "request": 1, "alert": 2}
    items.sort(key=lambda i: (i["time_ns"], i["leaf_index"] if i["leaf_index"] is not None else -1, order[i["kind"]]))
    with Listing(output, COLUMNS) as out:
        for item in items:
            doc = with_time({}, "time", item["time_ns"])
            out.add(doc | {k: v for k, v in item.items() if k != "time_ns"})
    if more:
        click.echo(f"more than {limit} requests: the first {limit} are shown (--limit, --since, --until)", err=True)


commands: list[click.Command] = [timeline]
