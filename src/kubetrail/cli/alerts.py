"""`kubetrail alerts` (list, show, deliver, sinks) and `kubetrail detect` (run over what is stored)."""

from __future__ import annotations

import click
import orjson

from kubetrail.alerts.alert import Alert
from kubetrail.alerts.outbox import Outbox
from kubetrail.alerts.sinks.stdout import text_line
from kubetrail.alerts.store import alert_events, get_alert, list_alerts, settings_for
from kubetrail.cli.exitcodes import FINDINGS, exit_with
from kubetrail.cli.options import PRIORITY, json_option, store_options
from kubetrail.cli.output import Column, Listing, emit, output_option, sinks_off_stdout
from kubetrail.cli.resolve import open_read, when
from kubetrail.store import QueryFilters, open_store
from kubetrail.timefmt import format_ns as out_time

ALERT_COLUMNS = [
    Column("id", "id", right=True),
    Column("time", "time", time=True),
    Column("priority", "priority"),
    Column("rule", "rule"),
    Column("subject", "subject"),
    Column("count", "count", right=True),
    Column("last seen", "last_seen", time=True, wide=True),
    Column("leaf", lambda a: [e["leaf_index"] for e in a["evidence"]]),
    Column("output", "output"),
]
SINK_COLUMNS = [Column("name", "name"), Column("type", "type"), Column("min priority", "min_priority"),
                Column("delivered", "delivered", right=True), Column("pending", "pending", right=True),
                Column("last error", "last_error")]


def _print(found: list[Alert], output: str) -> None:
    with Listing(output, ALERT_COLUMNS) as out:
        for a in found:
            out.add(a.to_json())


@click.group(invoke_without_command=True)
@click.option("--since", default=None, help="RFC 3339 time or a duration ago (90m, 2h, 7d); by event time.")
@click.option("--until", default=None, help="RFC 3339 time or a duration ago.")
@click.option("--rule", default=None, help="Only this rule.")
@click.option("--min-priority", type=PRIORITY, default=None,
              help="Only this priority or more severe: emergency, alert, critical, error, warning, notice, "
                   "informational (info), debug.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many alerts.")
@output_option
@store_options
@click.pass_context
def alerts(ctx: click.Context, since: str | None, until: str | None, rule: str | None, min_priority: str | None,
           limit: int | None, output: str, data_dir: str, location: str) -> None:
    """List stored alerts (one JSON object per alert with --json, evidence included).

    Subcommands: show ID, deliver, sinks.
    """
    if ctx.invoked_subcommand is not None:
        return
    with open_read(location, data_dir) as store:
        found = list_alerts(store, since=when(since, "--since"), until=when(until, "--until"), rule=rule,
                            min_priority=min_priority, limit=limit)
    _print(found, output)


@alerts.command("show")
@click.argument("alert_id", type=int)
@click.option("--events", "with_events", is_flag=True,
              help="Also list every occurrence folded into the alert (aggregated ones too).")
@json_option
@store_options
def show(alert_id: int, with_events: bool, as_json: bool, data_dir: str, location: str) -> None:
    """One alert with its evidence records (redacted events) from the trail."""
    from kubetrail.cli.query import record_row, target, who
    from kubetrail.web.documents import alert_document  # one serialisation with /api/v1/alerts/{id}

    store = open_store(location, data_dir=data_dir, readonly=True)
    try:
        out = alert_document(store, alert_id)
        alert = get_alert(store, alert_id)
        assert alert is not None  # alert_document raised NotFoundError otherwise
        records = [store.get(e.key) for e in alert.evidence]
        events = alert_events(store, alert_id) if with_events else []
    finally:
        store.close()
    if with_events:
        out["events"] = [e.to_json() for e in events]
    if as_json:
        click.echo(orjson.dumps(out, default=str).decode())
        return
    click.echo(text_line(alert))
    if alert.count > 1:
        click.echo(f"  {alert.count} occurrences, {out['first_seen']} .. {out['last_seen']}"
                   f"{'' if with_events else ' (--events lists them all)'}")
    for e in events:
        click.echo(f"  occurrence {e.occurrence} {out_time(e.time)} leaf {e.evidence.leaf_index} {e.evidence.stage}")
    for r in records:
        if r is not None:
            row = record_row(r)
            click.echo(f"  leaf {r.leaf_index}  {row['time']}  {row['stage']}  {row['code'] or '-'} {row['verb']} "
                       f"{target(row)}  {who(row)}  auditID {row['auditID']}")


@alerts.command("deliver")
@click.option("--now", "retry_now", is_flag=True, help="Retry every pending delivery now, ignoring backoff.")
@json_option
@store_options
def deliver(retry_now: bool, as_json: bool, data_dir: str, location: str) -> None:
    """Send pending deliveries from the outbox once; exit 1 if some are still pending.

    A stdout sink writes to standard error here when --json is given, so the report stays parseable.
    """
    store = open_store(location, data_dir=data_dir, create=False)
    try:
        box = Outbox(store, settings_for(data_dir))
        if retry_now:
            box.retry_now()
        with sinks_off_stdout(as_json):
            report = box.deliver_due(max_rows=10_000)
    finally:
        store.close()
    if as_json:
        emit({"delivered": report.delivered, "failed": report.failed, "pending": report.pending,
              "errors": dict(sorted(report.errors.items()))})
    else:
        click.echo(f"delivered {report.delivered}, failed {report.failed}, pending {report.pending}")
        for sink, err in sorted(report.errors.items()):
            click.echo(f"  {sink}: {err}", err=True)
    if report.pending:
        exit_with(FINDINGS)


@alerts.command("sinks")
@output_option
@store_options
def sinks(output: str, data_dir: str, location: str) -> None:
    """Configured sinks (DATA/detect.yaml) and their outbox counts; URLs are never printed."""
    settings = settings_for(data_dir)
    store = open_store(location, data_dir=data_dir, create=False)
    try:
        status = {s: (d, p, e) for s, d, p, e in Outbox(store, settings).status()}
    finally:
        store.close()
    if not settings.sinks:
        click.echo(f"no sinks configured (add sinks: to {data_dir}/detect.yaml); alerts are stored only", err=True)
    with Listing(output, SINK_COLUMNS) as out:
        for s in settings.sinks:
            d, p, e = status.get(s.name, (0, 0, ""))
            out.add({"name": s.name, "type": type(s).__name__.removesuffix("SinkConfig").lower(),
                     "min_priority": s.min_priority, "delivered": d, "pending": p, "last_error": e or None})


@click.command()
@click.option("--since", default=None, help="RFC 3339 time or a duration ago (by event time); default: all.")
@click.option("--until", default=None, help="RFC 3339 time or a duration ago.")
@click.option("--rules", "rule_files", multiple=True, help="Extra rule file(s), after the built-in ruleset.")
@click.option("--no-deliver", is_flag=True, help="Record alerts but leave deliveries in the outbox.")
@output_option
@store_options
def detect(since: str | None, until: str | None, rule_files: tuple[str, ...], no_deliver: bool, output: str,
           data_dir: str, location: str) -> None:
    """Run detection over events already stored (alerts already raised are not raised again).

    Prints the new alerts; the counts go to standard error. A stdout sink writes to standard error
    while this runs, so the listing (and -o json) stays parseable.
    """
    from kubetrail.detect.consumer import DetectConsumer, build_ruleset

    filters = QueryFilters(since=when(since, "--since"), until=when(until, "--until"))
    settings = settings_for(data_dir)
    ruleset = build_ruleset(settings, rule_files)
    store = open_store(location, data_dir=data_dir, create=False)
    try:
        consumer = DetectConsumer(store, settings, deliver=not no_deliver, ruleset=ruleset)
        first_id = store.alerts.max_id()
        with sinks_off_stdout(True):
            batch = []
            for rec in store.query(filters):
                batch.append(rec)
                if len(batch) >= 2000:
                    consumer.consume(batch, store)
                    batch = []
            consumer.consume(batch, store)
            consumer.close()
        new = [a for a in list_alerts(store) if (a.id or 0) > first_id]
    finally:
        store.close()
    _print(new, output)
    s = consumer.stats
    click.echo(f"scanned {s['records']} events: {s['matches']} rule matches, {s['alerts']} new alerts, "
               f"{s['folded']} new occurrences folded into existing alerts, {s['known']} already recorded"
               + (f", {s['tuned_out']} dropped by detect.yaml" if s["tuned_out"] else ""), err=True)


commands: list[click.Command] = [alerts, detect]
