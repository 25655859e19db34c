"""Options shared by many commands, so each flag has one spelling and one default."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

DEFAULT_DATA_DIR = "./kubetrail-data"

F = Callable[..., Any]


def data_option(fn: F) -> F:
    return click.option(
        "--data",
        "data_dir",
        default=DEFAULT_DATA_DIR,
        show_default=True,
        envvar="KUBETRAIL_DATA",
        type=click.Path(file_okay=False),
        help="Data directory (store, trail keys, rejects, checkpoints).",
    )(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")(fn)


# Falco's priorities, most severe first (alerts.alert.PRIORITIES), as `--min-priority` accepts them.
PRIORITY = click.Choice(["emergency", "alert", "critical", "error", "warning", "notice", "informational", "debug",
                         "info"], case_sensitive=False)
