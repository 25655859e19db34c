"""`kubetrail creds list|show|rebuild`: the credential inventory built from the audit trail."""

from __future__ import annotations

from typing import Any

import click

from kubetrail.cli.options import json_option, store_options
from kubetrail.cli.output import Column, Listing, emit, output_option
from kubetrail.cli.resolve import open_read, when
from kubetrail.credentials.model import KINDS
from kubetrail.credentials.report import list_credentials, show, summary
from kubetrail.store import open_store


@click.group()
def creds() -> None:
    """Every client certificate and token seen in the trail: who made it, who approved it, where it was used."""


def _flags(e: dict[str, Any]) -> list[str]:
    names = [f["flag"] for f in e["flags"]]
    return names + ["unaccounted"] if e["unaccounted"] and "unaccounted" not in names else names


CRED_COLUMNS = [
    Column("id", "id", whole=True),
    Column("kind", "kind"),
    Column("subject", lambda e: e["subject"] or "?"),
    Column("uses", "uses", right=True),
    Column("last used", "last_used", time=True),
    Column("expires", "expires_at", time=True),
    Column("flags", _flags),
    Column("created by", "created_by", wide=True),
    Column("approved by", "approved_by", wide=True),
    Column("credential id", "credential_id", wide=True),
]


@creds.command("list")
@click.option("--kind", type=click.Choice(KINDS), help="Only this kind of credential.")
@click.option("--active", is_flag=True, help="Only credentials that are still valid.")
@click.option("--expired", is_flag=True, help="Only expired credentials.")
@click.option("--unaccounted", is_flag=True, help="Only credentials seen in use whose issuance is not in the trail.")
@click.option("--at", "at", default=None, help="Judge active/expired at this time (RFC 3339 or 2h, 7d ago).")
@output_option
@store_options
def list_cmd(kind: str | None, active: bool, expired: bool, unaccounted: bool, at: str | None, output: str,
             data_dir: str, location: str) -> None:
    """List credentials, riskiest first (worst flag, then unaccounted, then most used)."""
    if active and expired:
        raise click.UsageError("--active and --expired exclude each other; give one")
    state = "active" if active else "expired" if expired else None
    now_ns = when(at, "--at")
    with open_read(location, data_dir) as store:
        entries = list_credentials(store, kind=kind, state=state, unaccounted=unaccounted, now_ns=now_ns)
    if not entries and output in ("table", "wide"):
        click.echo("no credentials match", err=True)
        return
    with Listing(output, CRED_COLUMNS) as out:
        for e in entries:
            out.add(e)
    gaps = sum(1 for e in entries if e["policy_gaps"])
    if gaps and output in ("table", "wide"):
        click.echo(f"\n{gaps} credential(s) have policy gaps (what the audit level hid): `kubetrail creds show ID`, "
                   "then `kubetrail policy lint`.", err=True)


@creds.command("summary")
@json_option
@store_options
def summary_cmd(as_json: bool, data_dir: str, location: str) -> None:
    """The inventory's standing facts in one finding: flags per class, identities no credential explains."""
    with open_read(location, data_dir) as store:
        found = summary(store)
    if as_json:
        emit(found)
        return
    click.echo(f"{found['credentials']} credentials and identities in the inventory")
    for f in found["flags"]:
        click.echo(f"  {f['priority']:<9} {f['flag']:<22} {f['facts']:>5} fact(s), {f['alerted']:>3} alerted")
    masters = found["system_masters_identities"]
    click.echo(f"{found['unaccounted_identities']} identities no credential explains"
               + (f", {len(masters)} in system:masters: {', '.join(masters)}" if masters else ""))
    for e in found["top_unaccounted"]:
        click.echo(f"  {e['subject']} ({e['uses']} requests): {e['reason']}")


@creds.command("show")
@click.argument("ident")
@click.option("--limit", default=200, show_default=True, help="Uses shown in the timeline.")
@json_option
@store_options
def show_cmd(ident: str, limit: int, as_json: bool, data_dir: str, location: str) -> None:
    """One credential (by id, X509SHA256=/JTI= credential id, fingerprint or JTI): chain, usage, timeline."""
    store = open_store(location, data_dir=data_dir, readonly=True)
    try:
        out = show(store, ident, limit=limit)
    finally:
        store.close()
    if as_json:
        emit(out)
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
@json_option
@store_options
def rebuild_cmd(as_json: bool, data_dir: str, location: str) -> None:
    """Recompute the inventory from every stored record (after an upgrade, or to check it)."""
    # here, not at the top: the consumer pulls in CSR/X.509 parsing, alert settings and telemetry,
    # which `creds list/show` (interactive, latency-budgeted) never use
    from kubetrail.credentials.consumer import rebuild as rebuild_inventory

    store = open_store(location, data_dir=data_dir, create=False)
    try:
        n = rebuild_inventory(store)
        count = store.credentials.count()
    finally:
        store.close()
    if as_json:
        emit({"records": n, "credentials": count})
    else:
        click.echo(f"read {n} records; {count} credentials")


commands: list[click.Command] = [creds]
