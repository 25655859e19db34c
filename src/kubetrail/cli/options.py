"""Options shared by many commands, so each flag has one spelling and one default."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from kubetrail.store import default_data_dir

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


def store_options(fn: F) -> F:
    """``--data`` and ``--store URL`` for a command that reads or writes the store.

    The command receives ``location`` (the location for ``kubetrail.store.open_store``: the URL, or the
    data directory) and ``data_dir`` (trail key, rejects, detect.yaml): ``--data`` when given, else the
    directory of a ``sqlite:///…`` store's file, else the default."""

    @functools.wraps(fn)
    def wrapper(*args: Any, data_dir: str, store_url: str | None, **kwargs: Any) -> Any:
        explicit = click.get_current_context().get_parameter_source("data_dir") not in (ParameterSource.DEFAULT, None)
        location = store_url or data_dir
        resolved = default_data_dir(location, data_dir if explicit or not store_url else None)
        return fn(*args, data_dir=resolved, location=location, **kwargs)

    wrapper = click.option(
        "--store", "store_url", default=None, envvar="KUBETRAIL_STORE", metavar="URL",
        help="The store: sqlite:///PATH.db or postgresql://USER@HOST/DB (default: the data directory's SQLite "
             "file). See docs/storage.md.")(wrapper)
    return data_option(wrapper)  # type: ignore[return-value]
