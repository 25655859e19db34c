"""`kubetrail logs`: container, node and Kubernetes-event lines the node agent stored.

One JSON object per line with ``--json`` (a contract: fields are added, never renamed): ``key time
kind node namespace pod pod_uid container stream message workload unit source``, plus ``leaf_index
image image_id container_id labels node_labels namespace_labels marks format``; empty strings where unknown.
"""

from __future__ import annotations

import re
import signal
import sys
import time
from types import FrameType
from typing import Any

import click
import orjson

from kubetrail.cli.options import json_option, store_options
from kubetrail.cli.resolve import when
from kubetrail.record import LogMeta, Record
from kubetrail.sources.k8s_events import event_message
from kubetrail.store import LogFilters, open_store
from kubetrail.timefmt import format_ns

FOLLOW_POLL_SECS = 0.5


def log_message(r: Record) -> str:
    """The line's text: a container or file line as stored, a journal entry's MESSAGE, an Event's
    ``reason: note``."""
    if r.format == "journald":
        msg = r.event().get("MESSAGE", "")
        return msg if isinstance(msg, str) else str(msg)
    if r.kind == "k8s_event":
        return event_message(r.event())
    return r.body.decode("utf-8", "replace")


def log_row(r: Record) -> dict[str, Any]:
    m = r.meta if isinstance(r.meta, LogMeta) else LogMeta()
    return {
        "key": r.key, "leaf_index": r.leaf_index, "time": format_ns(r.time), "time_ns": r.time, "kind": r.kind,
        "node": m.node,
        "namespace": m.namespace, "pod": m.pod, "pod_uid": m.pod_uid, "container": m.container,
        "stream": m.stream, "message": log_message(r), "workload": m.workload, "unit": m.unit,
        "source": r.source.label(), "image": m.image, "image_id": m.image_id, "container_id": m.container_id,
        "labels": m.labels, "node_labels": m.node_labels, "namespace_labels": m.namespace_labels,
        "marks": m.marks, "format": r.format,
    }


def _text(r: Record) -> str:
    m = r.meta if isinstance(r.meta, LogMeta) else LogMeta()
    if r.kind == "container":
        where = f"{m.namespace}/{m.pod}/{m.container}"
    elif r.kind == "k8s_event":
        where = f"event {m.namespace}/{m.pod or m.workload}".rstrip("/")
    else:
        where = m.unit or "-"
    return f"{format_ns(r.time)} {m.node or '-'} {where} {m.stream or '-'}: {log_message(r)}"


@click.command()
@click.option("--namespace", multiple=True, help="Pod namespace (repeat for any of several).")
@click.option("--pod", multiple=True, help="Pod name.")
@click.option("--workload", multiple=True, metavar="KIND/NS/NAME",
              help="deployment/shop/web, statefulset/…, daemonset/…, cronjob/…, job/…, pod/NS/NAME.")
@click.option("--container", multiple=True)
@click.option("--node", multiple=True)
@click.option("--unit", multiple=True, help="systemd unit, syslog identifier, `kernel`, or a textfile's unit.")
@click.option("--kind", multiple=True, type=click.Choice(["container", "node", "k8s_event"]),
              help="Only these record kinds (default: all three).")
@click.option("--since", default=None, help="RFC 3339 time or a duration ago (90m, 2h, 7d).")
@click.option("--until", default=None, help="RFC 3339 time or a duration ago.")
@click.option("--grep", "pattern", default=None, metavar="RE", help="Only lines whose message matches RE.")
@click.option("--order", type=click.Choice(["oldest", "newest"]), default="oldest", show_default=True)
@click.option("--limit", type=int, default=None, help="At most this many lines.")
@click.option("--count", "count_only", is_flag=True, help="Print only the number of matching lines (no --grep).")
@click.option("--follow", is_flag=True, help="Keep printing lines as they are stored, until interrupted.")
@json_option
@store_options
def logs(namespace: tuple[str, ...], pod: tuple[str, ...], workload: tuple[str, ...], container: tuple[str, ...],
         node: tuple[str, ...], unit: tuple[str, ...], kind: tuple[str, ...], since: str | None, until: str | None,
         pattern: str | None, order: str, limit: int | None, count_only: bool, follow: bool, as_json: bool,
         data_dir: str, location: str) -> None:
    """Search stored log lines (containers, nodes, Kubernetes events), oldest first by event time."""
    try:
        rx = re.compile(pattern) if pattern is not None else None
    except re.error as exc:
        raise click.BadParameter(f"not a valid regular expression: {exc}", param_hint="--grep") from exc
    filters = LogFilters(kind=list(kind), namespace=list(namespace), pod=list(pod), workload=list(workload),
                         container=list(container), node=list(node), unit=list(unit),
                         since=when(since, "--since"), until=when(until, "--until"))
    store = open_store(location, data_dir=data_dir, readonly=True)
    out = sys.stdout

    def emit(r: Record) -> None:
        if rx is not None and not rx.search(log_message(r)):
            return
        out.write((orjson.dumps(log_row(r)).decode() if as_json else _text(r)) + "\n")

    try:
        if count_only and rx is None:
            click.echo(str(store.count_logs(filters)))
            return
        shown, last = 0, -1
        for r in store.logs(filters, limit=None if rx else limit, order="DESC" if order == "newest" else "ASC"):
            last = max(last, r.leaf_index or 0)
            if rx is not None and not rx.search(log_message(r)):
                continue
            if limit and shown >= limit:
                break
            shown += 1
            if not count_only:
                emit(r)
        if count_only:
            click.echo(str(shown))
            return
        out.flush()
        if follow:
            _follow(store, filters, max(last, store.size() - 1), emit)
    finally:
        store.close()


def _follow(store: Any, filters: LogFilters, last: int, emit: Any) -> None:
    stopped = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stopped:
            filters.after_leaf = last
            for r in store.logs(filters, by="leaf"):
                emit(r)
                last = max(last, r.leaf_index or 0)
            sys.stdout.flush()
            time.sleep(FOLLOW_POLL_SECS)
    except KeyboardInterrupt:
        pass


commands: list[click.Command] = [logs]
