"""`kubetrail status [--json]`: the overview page's facts in the terminal.

Exits 0 when every live source delivered within ``silence_secs`` and the trail verifies, 1
(FINDINGS) otherwise, naming each problem; the JSON is ``/api/v1/status``'s document.
"""

from __future__ import annotations

from typing import Any

import click

from kubetrail.cli import exitcodes
from kubetrail.cli.options import json_option, store_options


@click.command()
@json_option
@store_options
def status(as_json: bool, data_dir: str, location: str) -> None:
    """Sources, trail, checkpoint, verify and alerts at a glance; exit 1 if a source is silent or verify fails."""
    from kubetrail.cli.output import json_line
    from kubetrail.cli.resolve import open_read
    from kubetrail.web.status import overview, run_verify

    with open_read(location, data_dir) as store:
        doc = overview(store, data_dir, verify=lambda: run_verify(store, data_dir))
    if as_json:
        click.echo(json_line(doc))
    else:
        click.echo(text(doc))
    if doc["problems"]:
        exitcodes.exit_with(exitcodes.FINDINGS)


def text(doc: dict[str, Any]) -> str:
    """The status document for people (the JSON has every field)."""
    t = doc["trail"]
    cp = t["checkpoint"]
    v = t["verify"] or {}
    kinds = ", ".join(f"{k['kind']} {k['records']}, {k['per_sec_5m']}/s now" for k in doc["kinds"]) or "none"
    lines = [f"records     {doc['records']} ({kinds})",
             f"trail       {t['size']} leaves; " + (f"checkpoint {cp['size']} signed {cp['signed_at']} "
                                                     f"({cp['age_secs']:.0f}s ago)" if cp else "no checkpoint yet"),
             "verify      " + ("intact" if v.get("ok") else f"FAILS: {v.get('reason')}"
                               + (f" at leaf {v['first_bad_index']}" if "first_bad_index" in v else "")),
             f"alerts      {doc['alerts']['total']}" + "".join(
                 f"; {p['priority']} {p['total']} ({p['last_24h']} in 24h)" for p in doc["alerts"]["by_priority"]),
             f"credentials {doc['credentials']['total']}", "sources:"]
    for s in doc["sources"]:
        state = "LOSS" if s["kind"] == "loss" else "SILENT" if s["silent"] else ("live" if s["live"] else "ingested")
        lines.append(f"  {state:<8} {s['source']} [{s['kind']}] {s['records']} records ({s['per_sec_5m']}/s now), "
                     f"last event {s['last_event']}"
                     + (f", last delivery {s['last_arrival']}" if s["last_arrival"] else ""))
    if not doc["sources"]:
        lines.append("  none")
    lines += [f"problem: {p}" for p in doc["problems"]]
    return "\n".join(lines)


commands: list[click.Command] = [status]
