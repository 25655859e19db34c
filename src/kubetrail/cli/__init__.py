"""The ``kubetrail`` command line: one module per command group, listed in ``COMMAND_MODULES``.

Each module exposes ``commands: list[click.Command]``. Errors that kubetrail raises on purpose
(``KubetrailError``) are printed as one line and exit 2; a traceback is always a bug.
"""

from __future__ import annotations

import errno
import importlib
import sys

import click

from kubetrail.errors import KubetrailError
from kubetrail.store import DAMAGED_ERRORS, store_failure

# The whole command registry, in the order `kubetrail --help` shows it.
COMMAND_MODULES = [
    "ingest",  # ingest, query, show, stats
    "run",  # run
    "webhook",  # webhook-config, webhook serve
    "demo",
    "trail",  # keys, checkpoint, proof, verify, retention
    "rules",  # rules lint/test/list
    "alerts",  # alerts, detect
    "creds",  # creds list/show
    "policy",  # policy generate/lint/simulate/explain, check apiserver
    "deploy",  # deploy apiserver
]


class _Cli(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except KubetrailError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except DAMAGED_ERRORS as exc:  # a full disk or a damaged store file: one line, never a traceback
            click.echo(f"error: {store_failure(exc)}", err=True)
            sys.exit(2)
        except OSError as exc:
            if exc.errno not in DISK_FULL_ERRNOS:
                raise
            click.echo(f"error: the disk is full: {exc.filename or 'a file'} could not be written ({exc.strerror}); "
                       "free space and run the command again", err=True)
            sys.exit(2)


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="kubetrail")
def cli() -> None:
    """kubetrail: a tamper-evident audit trail, credential inventory and detections for Kubernetes."""


for _name in COMMAND_MODULES:
    _module = importlib.import_module(f"kubetrail.cli.{_name}")
    for _command in _module.commands:
        cli.add_command(_command)


def main() -> None:
    cli(prog_name="kubetrail")
