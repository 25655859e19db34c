"""``kubetrail completion bash|zsh|fish``: the shell completion script, from click's own generator.

Completion asks the program itself (``_KUBETRAIL_COMPLETE=<shell>_complete kubetrail …``), so it
always knows today's commands and flags; the script only has to be loaded once (docs/cli.md).
"""

from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    Load it once per shell with, for bash, `eval "$(kubetrail completion bash)"` (in ~/.bashrc);
    zsh: the same with `zsh` (in ~/.zshrc); fish:
    `kubetrail completion fish > ~/.config/fish/completions/kubetrail.fish`.
    """
    from click.shell_completion import get_completion_class

    from kubetrail.cli import cli

    cls = get_completion_class(shell)
    assert cls is not None  # every name in SHELLS is one of click's
    click.echo(cls(cli, {}, "kubetrail", "_KUBETRAIL_COMPLETE").source())


commands: list[click.Command] = [completion]
