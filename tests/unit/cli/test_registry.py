"""The command registry (`kubetrail.cli.COMMANDS`) says the truth about every command module."""

from __future__ import annotations

import pkgutil

import click
import pytest
from click.testing import CliRunner

import kubetrail.cli
from kubetrail.cli import COMMANDS, cli

HELPERS = {"daemon", "exitcodes", "options", "output", "resolve"}  # shared code, not command modules


@pytest.mark.parametrize("name", list(COMMANDS))
def test_registry_summary_is_the_commands_first_sentence(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None and command.name == name
    assert COMMANDS[name].summary == command.get_short_help_str(limit=1000), \
        f"update COMMANDS[{name!r}].summary to the first sentence of its help"


def test_every_command_module_is_registered() -> None:
    modules = {m.name for m in pkgutil.iter_modules(kubetrail.cli.__path__)} - HELPERS
    registered = {e.module for e in COMMANDS.values()}
    assert modules == registered
    for module in modules:
        for command in __import__(f"kubetrail.cli.{module}", fromlist=["commands"]).commands:
            assert COMMANDS.get(command.name, (None,))[0] == module, f"{command.name} is not in COMMANDS"


def test_help_lists_every_command_and_a_typo_gets_a_suggestion() -> None:
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0
    listed = [line.split()[0] for line in r.stdout.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == list(COMMANDS)
    r = CliRunner().invoke(cli, ["qurey"], prog_name="kubetrail")
    assert r.exit_code == 2 and r.stderr.strip() == ("error: No such command 'qurey'; did you mean `kubetrail query`? "
                                                     "(see `kubetrail --help`)")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_and_answers(shell: str) -> None:
    r = CliRunner().invoke(cli, ["completion", shell], prog_name="kubetrail")
    assert r.exit_code == 0 and "_KUBETRAIL_COMPLETE" in r.stdout


def test_completion_knows_commands_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the shell asks (`_KUBETRAIL_COMPLETE=bash_complete`), answered from the registry."""
    for words, cword, expect in (("kubetrail que", "1", "plain,query"),
                                 ("kubetrail query --exclude-v", "2", "plain,--exclude-verb")):
        monkeypatch.setenv("COMP_WORDS", words)
        monkeypatch.setenv("COMP_CWORD", cword)
        r = CliRunner().invoke(cli, [], prog_name="kubetrail", env={"_KUBETRAIL_COMPLETE": "bash_complete"})
        assert expect in r.stdout.splitlines(), r.output
