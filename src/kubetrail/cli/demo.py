"""`kubetrail demo`: generate the bundled attack scenario, ingest it for real, show what kubetrail finds.

Steps: generate the log (``kubetrail.demo.scenario``, seeded: the same seed writes the same bytes)
into a temporary file (or ``--log PATH``; never into the data directory, as it holds the scenario's
fake secrets in clear) and write the demo cluster's audit policy to ``DATA/demo/``; ingest the log through the same pipeline
as ``kubetrail ingest`` (redaction, store, and whatever consumers this build has: trail checkpoints,
detections, the credential inventory); hunt the attack in the store (``kubetrail.demo.timeline``);
report the parts that exist (``kubetrail.demo.report``); print what to run next. Running it again
into the same data directory stores nothing new.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile

import click

from kubetrail.cli.options import DEFAULT_DATA_DIR, data_option
from kubetrail.cli.output import color_enabled
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
from kubetrail.sources.files import read_paths
from kubetrail.store import open_store

SOURCE = SourceRef(cluster="demo", node="demo-control-plane", stream="audit-file")


def ingest_demo(data_dir: str, scenario: Scenario, log_path: str | None = None) -> Summary:
    """Ingest the scenario into ``data_dir``; the raw log is kept only at ``log_path`` when given.

    The raw log is what an apiserver would write: it carries the scenario's (fake) Secret values and
    tokens in clear. It is never written into the data directory, which holds only what kubetrail
    stores, so that directory stays free of secrets; without ``log_path`` it lives in a temporary
    directory for the duration of the ingest.
    """
    try:
        os.makedirs(os.path.join(data_dir, "demo"), exist_ok=True)
        write_policy(os.path.join(data_dir, "demo", POLICY_NAME))
    except OSError as exc:
        raise InputError(f"cannot write into the data directory {data_dir}: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="kubetrail-demo-") as tmp:
        path = log_path or os.path.join(tmp, LOG_NAME)
        try:
            write_log(path, scenario)
        except OSError as exc:
            raise InputError(f"cannot write the demo log to {path}: {exc}") from exc
        pipe = open_pipeline(Options(data_dir=data_dir, cluster=SOURCE.cluster))
        try:
            pipe.ingest_items(read_paths([path]), SOURCE)
        finally:
            pipe.close()
            pipe.store.close()
    return pipe.summary


def _distributed(data_dir: str, scenario: Scenario, log_path: str | None) -> None:
    """The scenario's log tailed by a node agent, shipped through NATS JetStream, stored by a collector."""
    from kubetrail.demo.distributed import through_broker

    try:
        os.makedirs(os.path.join(data_dir, "demo"), exist_ok=True)
        write_policy(os.path.join(data_dir, "demo", POLICY_NAME))
    except OSError as exc:
        raise InputError(f"cannot write into the data directory {data_dir}: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="kubetrail-demo-") as tmp:
        path = log_path or os.path.join(tmp, LOG_NAME)
        try:
            write_log(path, scenario)
        except OSError as exc:
            raise InputError(f"cannot write the demo log to {path}: {exc}") from exc
        click.echo("kubetrail demo --distributed: nats-server, a node agent and a collector on this machine ...")
        shipped = through_broker(data_dir, path, SOURCE.node, tmp, log=lambda m: click.echo(f"  {m}", err=True))
    click.echo(f"through the broker: the agent sealed {shipped.sealed:,} records into its WAL and shipped them to "
               f"NATS JetStream ({shipped.server}); the collector's store holds {shipped.stored:,} "
               f"({shipped.seconds:.1f}s; a second run stores nothing twice)")


def _section(title: str) -> None:
    click.echo("")
    click.echo(click.style(title, bold=True) if color_enabled() else title)


@click.command()
@click.option("--events", type=click.IntRange(min=MIN_EVENTS), default=DEFAULT_EVENTS, show_default=True,
              help="Approximate size of the generated log (at least this many events).")
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True,
              help="Seed of the scenario; the same seed and size give the same log.")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), default=None,
              help="Also keep the raw audit log here (it holds the scenario's fake secrets in clear).")
@click.option("--distributed", is_flag=True,
              help="Go through the distributed shape: nats-server, a node agent (disk WAL) and a collector.")
@data_option
def demo(events: int, seed: int, log_path: str | None, distributed: bool, data_dir: str) -> None:
    """Run the bundled attack scenario: a 2-hour audit log with an attack hidden in ordinary traffic.

    Generates the log, ingests it like `kubetrail ingest` does (or, with --distributed, tails it
    with a node agent that ships it through NATS JetStream to a collector), then shows the attack
    timeline found by querying the store, the alerts, the credential inventory and the trail
    verification (where this build has them), and what to run next.
    """
    scenario = generate(seed=seed, events=events)
    if distributed:
        _distributed(data_dir, scenario, log_path)
    else:
        s = ingest_demo(data_dir, scenario, log_path)
    click.echo(f"kubetrail demo: {len(scenario.events):,} audit events of cluster 'demo' over 2 hours (seed {seed})"
               + (f", raw log kept in {log_path}" if log_path else ""))
    if not distributed:
        click.echo(f"ingested: read {s.read}, stored {s.stored}, duplicates {s.duplicates}, rejected {s.rejected}")
        if s.stored == 0 and s.duplicates:
            click.echo("(already ingested by an earlier run: nothing stored twice)")

    store = open_store(data_dir, create=False)
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
    _section("Node agent (container logs that line up with the audit trail):")
    from kubetrail.demo.nodes import report, run_node_agent

    for line in report(data_dir, run_node_agent(data_dir, seed)):
        click.echo(f"  {line}")
    _section("Tamper-evident trail:")
    print_trail(data_dir, click.echo)
    _section("Next:")
    for line in _hints(data_dir, scenario, steps, log_path):
        click.echo(f"  {line}")


def _found(steps: list[Step]) -> int:
    return sum(1 for s in steps if s.records)


def _hints(data_dir: str, scenario: Scenario, steps: list[Step], log_path: str | None) -> list[str]:
    """Commands worth running next, with this run's data directory and findings filled in."""
    data = "" if os.path.normpath(data_dir) == os.path.normpath(DEFAULT_DATA_DIR) else f" --data {shlex.quote(data_dir)}"
    policy = shlex.quote(os.path.normpath(os.path.join(data_dir, "demo", POLICY_NAME)))
    csr = next((s.records[0] for s in steps if s.records and "system:masters" in s.title), None)
    pairs = [
        (f"kubetrail query{data} --user evil-admin", "everything the forged admin did"),
        (f"kubetrail timeline{data} --user evil-admin", "the same as one story, with alerts and credentials"),
        (f"kubetrail query{data} --source-ip {scenario.facts.attacker_ips[1]}", "the stolen token's new address"),
        (f"kubetrail query{data} --resource certificatesigningrequests --json", "the CSR's life, as JSON"),
    ]
    if csr is not None:
        pairs.append((f"kubetrail show{data} {csr.leaf_index}", "the evil CSR: metadata and redacted body"))
    pairs += [
        (f"kubetrail alerts{data}", "what the detections raised"),
        (f"kubetrail creds list{data}", "every certificate and token, who made it, where it was used"),
        (f"kubetrail logs{data} --workload deployment/shop/payments", "the app's lines on both nodes"),
        (f"kubetrail verify{data}", "prove the stored trail is intact"),
        (f"kubetrail policy lint {policy}", "what the demo cluster's audit policy leaks"),
    ]
    if log_path:
        pairs.append((f"kubetrail policy simulate {policy} --events {shlex.quote(log_path)}",
                      "what another policy would have kept"))
    width = min(max(len(cmd) for cmd, _ in pairs), 52)
    out = []
    bin_dir = os.path.relpath(os.path.dirname(sys.executable))
    if shutil.which("kubetrail") is None and os.path.exists(os.path.join(bin_dir, "activate")):
        out.append(f"# first: source {shlex.quote(os.path.join(bin_dir, 'activate'))}   "
                   "(`make demo` installed kubetrail into the venv only)")
    for cmd, why in pairs:
        if len(cmd) > width:
            out += [f"# {why}", cmd]
        else:
            out.append(f"{cmd:<{width}}   # {why}")
    return out


commands: list[click.Command] = [demo]
