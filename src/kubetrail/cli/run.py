"""`kubetrail run --config FILE`: the live, single-process shape (no broker)."""

from __future__ import annotations

import logging

import click
import msgspec

from kubetrail.cli.daemon import run_until_signalled
from kubetrail.config import load
from kubetrail.errors import ConfigError


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="YAML config file (see docs/config.md).")
@click.option("--data", "data_dir", default=None, help="Override the config's data_dir.")
@click.option("--store", "store_url", default=None, envvar="KUBETRAIL_STORE", metavar="URL",
              help="Override the config's store (sqlite:///PATH.db or postgresql://…; docs/storage.md).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Over 0: detection and credentials run in a process of their own beside the writer "
                   "(0: all in this process; default: the config's `workers`, else the CPU count, 0 on one CPU).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="What the sources log to stderr (listening addresses, reloads, failures).")
def run(config_path: str, data_dir: str | None, store_url: str | None, workers: int | None, log_level: str) -> None:
    """Run the configured live sources until SIGINT/SIGTERM, then flush positions and exit 0."""
    from kubetrail.pipeline import run_live

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load(config_path)
    if not config.sources:
        raise ConfigError(f"{config_path}: sources", "no sources configured: `run` would wait for nothing "
                          "(docs/config.md lists the source types)")
    if data_dir:
        config = msgspec.structs.replace(config, data_dir=data_dir)
    if store_url:
        config = msgspec.structs.replace(config, store=store_url)
    if workers is not None:
        config = msgspec.structs.replace(config, workers=workers)
    click.echo(f"kubetrail run: {len(config.sources)} source(s), data in {config.data_dir}", err=True)
    run_until_signalled("run", config, lambda stop: run_live(config, stop, log=lambda m: click.echo(m, err=True)))


commands: list[click.Command] = [run]
