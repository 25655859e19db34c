"""`kubetrail agent --config FILE`: the node agent (DaemonSet): container, node and event logs.

The same config file and builder as ``kubetrail run`` (``config.load``, then ``pipeline.run_agent``);
only the wiring at the end differs, and it lives in pipeline.py.
"""

from __future__ import annotations

import logging

import click
import msgspec

from kubetrail.cli.daemon import run_until_signalled
from kubetrail.config import load, with_node


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="YAML config file (see docs/agent.md and docs/config.md).")
@click.option("--data", "data_dir", default=None, help="Override the config's data_dir.")
@click.option("--node", default="", envvar="NODE_NAME", show_envvar=True,
              help="This node's name, for every source (and enrich) whose config leaves `node` empty.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="What the agent logs to stderr.")
def agent(config_path: str, data_dir: str | None, node: str, log_level: str) -> None:
    """Run the node agent's sources (cri_logs, journald, textfile, k8s_events, audit) until SIGINT/SIGTERM."""
    from kubetrail.pipeline import run_agent

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = with_node(load(config_path), node)
    if data_dir:
        config = msgspec.structs.replace(config, data_dir=data_dir)
    enrich = "enrich from the API server" if config.enrich else "no API server (path metadata only)"
    click.echo(f"kubetrail agent: {len(config.sources)} source(s), {enrich}, data in {config.data_dir}", err=True)
    run_until_signalled("agent", config, lambda stop: run_agent(config, stop, log=lambda m: click.echo(m, err=True)))


commands: list[click.Command] = [agent]
