"""Commands of this group are added here (see kubetrail.cli.COMMAND_MODULES)."""

from __future__ import annotations

import click

commands: list[click.Command] = []
