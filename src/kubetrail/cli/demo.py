"""`kubetrail demo`: generate the bundled attack scenario, ingest it for real, show what kubetrail finds.

Steps: write ``DATA/demo/audit.log`` (``kubetrail.demo.scenario``, seeded: the same seed writes the
same bytes) and the demo cluster's audit policy beside it; ingest the log through the same pipeline
as ``kubetrail ingest`` (redaction, store, and whatever consumers this build has: trail checkpoints,
detections, the credential inventory); hunt the attack in the store (``kubetrail.demo.timeline``);
report the parts that exist (``kubetrail.demo.report``); print what to run next. Running it again
into the same data directory stores nothing new.
"""

from __future__ import annotations

import os
import shlex

import click

from kubetrail.cli.options import data_option
from kubetrail.demo.report import print_alerts, print_credentials, print_timeline, print_trail
from kubetrail.demo.scenario import (
    DEFAULT_EVENTS,
    DEFAULT_SEED,
    LOG_NAME,
    MIN_EVENTS,
    POLICY_NAME,
    Scenario,
    generate,
    write_log,
    write_policy,
)
from kubetrail.demo.timeline import Step, hunt
from kubetrail.errors import InputError
from kubetrail.pipeline import Options, Summary, open_pipeline
from kubetrail.record import SourceRef
from kubetrail.sources.formats import read_paths
from kubetrail.store.sqlite import Store

SOURCE = SourceRef(cluster="demo", node="demo-control-plane", stream="audit-file")


def ingest_demo(data_dir: str, scenario: Scenario) -> tuple[str, Summary]:
    """Write the scenario into ``DATA/demo/`` and ingest it; returns the log path and the counts."""
    demo_dir = os.path.join(data_dir, "demo")
    log_path = os.path.join(demo_dir, LOG_NAME)
    try:
        write_log(log_path, scenario)
        write_policy(os.path.join(demo_dir, POLICY_NAME))
    except OSError as exc:
        raise InputError(f"cannot write the demo log into {demo_dir}: {exc}") from exc
    pipe = open_pipeline(Options(data_dir=data_dir, cluster=SOURCE.cluster))
    try:
        pipe.ingest_items(read_paths([log_path]), SOURCE)
    finally:
        pipe.close()
        pipe.store.close()
    return log_path, pipe.summary


def _section(title: str) -> None:
    click.echo("")
    click.echo(click.style(title, bold=True))


@click.command()
@click.option("--events", type=click.IntRange(min=MIN_EVENTS), default=DEFAULT_EVENTS, show_default=True,
              help="Approximate size of the generated log (at least this many events).")
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True,
              help="Seed of the scenario; the same seed and size give the same log.")
@data_option
def demo(events: int, seed: int, data_dir: str) -> None:
    """Run the bundled attack scenario: a 2-hour audit log with an attack hidden in ordinary traffic.

    Writes DATA/demo/audit.log, ingests it like `kubetrail ingest` does, then shows the attack
    timeline found by querying the store, the alerts, the credential inventory and the trail
    verification (where this build has them), and what to run next.
    """
    scenario = generate(seed=seed, events=events)
    log_path, s = ingest_demo(data_dir, scenario)
    click.echo(f"kubetrail demo: {len(scenario.events):,} audit events of cluster 'demo' (seed {seed}) "
               f"written to {log_path}")
    click.echo(f"ingested: read {s.read}, stored {s.stored}, duplicates {s.duplicates}, rejected {s.rejected}")
    if s.stored == 0 and s.duplicates:
        click.echo("(already ingested by an earlier run: nothing stored twice)")

    store = Store.open(data_dir, create=False)
    try:
        steps = hunt(store)
    finally:
        store.close()
    _section(f"Attack timeline, found by querying the store ({_found(steps)}/{len(steps)} steps):")
    print_timeline(steps, click.echo)
    _section("Alerts raised:")
    print_alerts(data_dir, click.echo)
    _section("Credential inventory (most dangerous first):")
    print_credentials(data_dir, click.echo)
    _section("Tamper-evident trail:")
    print_trail(data_dir, click.echo)
    _section("Next:")
    for line in _hints(data_dir, scenario, steps):
        click.echo(f"  {line}")


def _found(steps: list[Step]) -> int:
    return sum(1 for s in steps if s.records)


def _hints(data_dir: str, scenario: Scenario, steps: list[Step]) -> list[str]:
    data = "" if os.path.normpath(data_dir) == "kubetrail-data" else f" --data {shlex.quote(data_dir)}"
    facts = scenario.facts
    first = next((s.records[0] for s in steps if s.records and "system:masters" in s.title), None)
    out = [
        f"kubetrail query{data} --user evil-admin                  # everything the forged admin did",
        f"kubetrail query{data} --source-ip {facts.attacker_ips[1]}           # the stolen token's new address",
        f"kubetrail query{data} --resource certificatesigningrequests --json",
    ]
    if first is not None:
        out.append(f"kubetrail show{data} {first.leaf_index}                        # the CSR, redacted body and all")
    out += [
        f"kubetrail alerts{data}",
        f"kubetrail creds list{data}",
        f"kubetrail verify{data}",
        f"kubetrail policy lint {shlex.quote(os.path.join(data_dir, 'demo', POLICY_NAME))}"
        "   # the demo cluster's leaky audit policy",
    ]
    return out


commands: list[click.Command] = [demo]
