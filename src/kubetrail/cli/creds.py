"""`kubetrail creds list|show|rebuild`: the credential inventory built from the audit trail."""

from __future__ import annotations

import click
import orjson

from kubetrail.cli.options import data_option, json_option
from kubetrail.credentials.consumer import rebuild as rebuild_inventory
from kubetrail.credentials.model import KINDS
from kubetrail.credentials.report import list_credentials, show, text_table
from kubetrail.store import open_store
from kubetrail.timefmt import parse_when


@click.group()
def creds() -> None:
    """Every client certificate and token seen in the trail: who made it, who approved it, where it was used."""


@creds.command("list")
@click.option("--kind", type=click.Choice(KINDS), help="Only this kind of credential.")
@click.option("--active", "state", flag_value="active", help="Only credentials that are still valid.")
@click.option("--expired", "state", flag_value="expired", help="Only expired credentials.")
@click.option("--unaccounted", is_flag=True, help="Only credentials seen in use whose issuance is not in the trail.")
@click.option("--at", "at", default=None, help="Judge active/expired at this time (RFC 3339 or 2h, 7d ago).")
@json_option
@data_option
def list_cmd(kind: str | None, state: str | None, unaccounted: bool, at: str | None, as_json: bool,
             data_dir: str) -> None:
    """List credentials, riskiest first (worst flag, then unaccounted, then most used)."""
    store = open_store(data_dir, readonly=True)
    try:
        entries = list_credentials(store, kind=kind, state=state, unaccounted=unaccounted,
                                   now_ns=parse_when(at) if at else None)
    finally:
        store.close()
    if as_json:
        for e in entries:
            click.echo(orjson.dumps(e).decode())
        return
    if not entries:
        click.echo("no credentials match")
        return
    click.echo(text_table(entries))
    gaps = sum(1 for e in entries if e["policy_gaps"])
    if gaps:
        click.echo(f"\n{gaps} credential(s) have policy gaps (what the audit level hid): `kubetrail creds show ID`, "
                   "then `kubetrail policy lint`.")


@creds.command("show")
@click.argument("ident")
@click.option("--limit", default=200, show_default=True, help="Uses shown in the timeline.")
@json_option
@data_option
def show_cmd(ident: str, limit: int, as_json: bool, data_dir: str) -> None:
    """One credential (by id, X509SHA256=/JTI= credential id, fingerprint or JTI): chain, usage, timeline."""
    store = open_store(data_dir, readonly=True)
    try:
        out = show(store, ident, limit=limit)
    finally:
        store.close()
    if as_json:
        click.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"{out['id']}  {out['kind']}  {out['state']}{'  UNACCOUNTED' if out['unaccounted'] else ''}")
    for label, key in (("subject", "subject"), ("groups", "groups"), ("created by", "created_by"),
                       ("impersonator", "impersonator"), ("approved by", "approved_by"), ("denied by", "denied_by"),
                       ("created", "created_at"), ("expires", "expires_at"), ("nominal expiry", "nominal_expires_at"),
                       ("revoked", "revoked_at"), ("fingerprint", "fingerprint"), ("serial", "serial"),
                       ("jti", "jti")):
        if out.get(key):
            value = ", ".join(out[key]) if isinstance(out[key], list) else out[key]
            click.echo(f"  {label:<15} {value}")
    click.echo(f"  {'uses':<15} {out['uses']} ({out['exact_uses']} exact, {out['probable_uses']} probable, "
               f"{out['denied']} denied) {out['first_used'] or ''} .. {out['last_used'] or ''}")
    if out["source_ips"]:
        click.echo(f"  {'source IPs':<15} {', '.join(out['source_ips'])}")
    for f in out["flags"]:
        click.echo(f"  FLAG {f['priority']:<8} {f['flag']}: {f['explanation']} (leaf {f['leaf_index']})")
    for g in out["policy_gaps"]:
        click.echo(f"  GAP  {g['code']}: {g['note']}")
    click.echo("creation chain:")
    for s in out["chain"]:
        click.echo(f"  {s['time']}  {s['action']:<17} by {s['by']}  leaf {s['leaf_index']}  auditID {s['auditID']}"
                   f"{'  (probable)' if s['link'] == 'probable' else ''}")
    click.echo("usage timeline:")
    for u in out["timeline"]:
        click.echo(f"  {u['time']}  {u['code'] or '-':>3} {u['verb']:<8} {u['resource']:<30} {u['source_ip']:<15} "
                   f"leaf {u['leaf_index']}{'  (probable)' if u['link'] == 'probable' else ''}")
    if out["timeline_truncated"]:
        click.echo(f"  … {out['uses'] - len(out['timeline'])} more (--limit)")


@creds.command("rebuild")
@data_option
def rebuild_cmd(data_dir: str) -> None:
    """Recompute the inventory from every stored record (after an upgrade, or to check it)."""
    store = open_store(data_dir, create=False)
    try:
        n = rebuild_inventory(store)
        count = store.credentials.count()
    finally:
        store.close()
    click.echo(f"read {n} records; {count} credentials")


commands: list[click.Command] = [creds]
