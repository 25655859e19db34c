"""Docs stay honest: every command has help text and is named in README.md or docs/."""

from __future__ import annotations

from pathlib import Path

import click

from kubetrail.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def walk(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        full = f"{prefix}{name}"
        out.append((full, cmd))
        if isinstance(cmd, click.Group):
            out.extend(walk(cmd, full + " "))
    return out


def docs_text() -> str:
    parts = [(ROOT / "README.md").read_text()]
    parts += [p.read_text() for p in sorted((ROOT / "docs").rglob("*.md"))]
    return "\n".join(parts)


def test_every_command_has_help_and_docs() -> None:
    text = docs_text()
    missing_help = [name for name, cmd in walk(cli) if not (cmd.help or cmd.short_help)]
    undocumented = [name for name, _ in walk(cli) if f"kubetrail {name}" not in text]
    assert not missing_help, f"commands without help: {missing_help}"
    assert not undocumented, f"commands not in README.md or docs/: {undocumented}"


def test_readme_starts_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().split("\n\n", 3)[:3]
    block = "\n".join(head)
    assert "make demo" in block and "make test" in block
