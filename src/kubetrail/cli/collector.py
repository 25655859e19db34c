"""`kubetrail collector --config FILE`: the cluster side of the distributed shape (broker -> store).

The config's ``source:`` names the broker (``type: nats`` durable pull consumer, or ``type: kafka``
consumer group); records go to the store, the trail, detection and the credential inventory, and
the broker is acknowledged only after the store committed them (docs/transport.md).
"""

from __future__ import annotations

import logging

import click
import msgspec

from kubetrail.cli.daemon import run_until_signalled
from kubetrail.config import load


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="YAML config file with a `source:` section (see docs/transport.md).")
@click.option("--data", "data_dir", default=None, help="Override the config's data_dir.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="What the collector logs to stderr.")
def collector(config_path: str, data_dir: str | None, log_level: str) -> None:
    """Store what the agents shipped through the broker until SIGINT/SIGTERM, then exit 0."""
    from kubetrail.pipeline import run_collector

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load(config_path)
    if data_dir:
        config = msgspec.structs.replace(config, data_dir=data_dir)
    where = config.source.__struct_config__.tag if config.source is not None else "nothing"
    click.echo(f"kubetrail collector: reading {where}, data in {config.data_dir}", err=True)
    run_until_signalled("collector", config,
                        lambda stop: run_collector(config, stop, log=lambda m: click.echo(m, err=True)))


commands: list[click.Command] = [collector]
