"""``kubetrail rules lint|test|list``: check Falco-language rules files and run them over event files.

``--rules`` and ``--events`` take several files each (``--rules a.yaml b.yaml --events x.json y.json``):
``_GreedyCommand`` rewrites that into repeated options before click parses the line.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click
import orjson

from kubetrail.cli.alerts import PRIORITY
from kubetrail.cli.exitcodes import FINDINGS, exit_with
from kubetrail.cli.options import json_option
from kubetrail.cli.output import Column, Listing, output_option
from kubetrail.detect.engine import RuleSet, builtin_rule_paths, load_rules
from kubetrail.errors import InputError
from kubetrail.timefmt import format_ns

_GREEDY = ("--rules", "--events")


class _GreedyCommand(click.Command):
    """Let ``--rules``/``--events`` swallow every following non-option word."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        current: str | None = None
        for arg in args:
            if arg in _GREEDY:
                current = arg
                continue
            if arg.startswith("-") and arg != "-":
                # "--rules=a.yaml b.yaml" keeps collecting after the first value
                current = next((g for g in _GREEDY if arg.startswith(g + "=")), None)
                out.append(arg)
                continue
            if current is not None:
                out.extend((current, arg))
            else:
                out.append(arg)
        return super().parse_args(ctx, out)


def _compat_options(fn: Any) -> Any:
    fn = click.option("--compat", type=click.Choice(["kubetrail", "falco"]), default="kubetrail", show_default=True,
                      help="'falco' reproduces the k8saudit plugin's quirks (docs/detect-falco.md).")(fn)
    return fn


def _print_diagnostics(rs: RuleSet, quiet: bool, err: bool = False) -> None:
    for d in rs.errors:
        click.echo(str(d), err=True)
    if not quiet:
        for d in rs.warnings:
            click.echo(str(d), err=err)


MATCH_COLUMNS = [Column("time", "time", time=True), Column("priority", "priority"), Column("rule", "rule"),
                 Column("audit id", "auditID", id=True, wide=True), Column("output", "output")]
RULE_COLUMNS = [Column("priority", "priority"), Column("id", "id"), Column("origin", "origin"),
                Column("enabled", "enabled"), Column("alerts", "alerts", wide=True), Column("tags", "tags", wide=True),
                Column("where", "where", wide=True), Column("desc", "desc", wide=True)]


@click.group("rules")
def rules() -> None:
    """Falco-language detection rules: lint, test over events, list."""


@rules.command("lint")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_compat_options
@click.option("-q", "--quiet", is_flag=True, help="Do not print warnings.")
@json_option
def lint(files: tuple[str, ...], compat: str, quiet: bool, as_json: bool) -> None:
    """Load FILES in order (later files override earlier ones) and report every error and warning.

    Exit status 1 when any file has an error.
    """
    rs = load_rules(list(files), compat=compat)
    if as_json:
        click.echo(orjson.dumps({"ok": rs.ok, **rs.counts, "errors": [str(d) for d in rs.errors],
                                 "warnings": [str(d) for d in rs.warnings]}).decode())
    else:
        _print_diagnostics(rs, quiet)
        c = rs.counts
        click.echo(f"{c['lists']} lists, {c['macros']} macros, {c['rules']} rules "
                   f"({c['compiled']} compiled, {c['skipped']} of other sources skipped); "
                   f"{len(rs.errors)} errors, {len(rs.warnings)} warnings")
    if not rs.ok:
        exit_with(FINDINGS)


def _rule_paths(paths: tuple[str, ...]) -> list[str]:
    if paths:
        return list(paths)
    builtin = builtin_rule_paths()
    if not builtin:
        raise InputError("no --rules given and no built-in rules found in detect/rules/")
    return builtin


def _events(paths: list[str]) -> Iterator[dict[str, Any]]:
    from kubetrail.record import Decoded
    from kubetrail.sources.files import read_paths

    rejected = 0
    for item in read_paths(paths):
        if isinstance(item, Decoded):
            yield item.event
        else:
            rejected += 1
            click.echo(f"{item.position}: data not recognized as a k8s audit event: {item.reason}", err=True)
    if rejected:
        click.echo(f"{rejected} input(s) rejected", err=True)


@rules.command("test", cls=_GreedyCommand)
@click.option("--rules", "rule_files", multiple=True, type=click.Path(dir_okay=False),
              help="Rules files, in load order (default: the built-in ruleset). Takes several files.")
@click.option("--events", "event_files", multiple=True, required=True, type=click.Path(),
              help="Audit event files in any format kubetrail ingests. Takes several files.")
@_compat_options
@click.option("--match", "match", type=click.Choice(["first", "all"]), default="first", show_default=True,
              help="Report only the first matching rule per event (Falco's default) or all of them.")
@click.option("--min-priority", type=PRIORITY, default="debug", show_default=True,
              help="Ignore rules below this priority.")
@output_option
def test(rule_files: tuple[str, ...], event_files: tuple[str, ...], compat: str, match: str, min_priority: str,
         output: str) -> None:
    """Run rules over event files and print one line per match.

    With --json each line is {"rule", "priority", "output", "auditID", "stage", "leaf_index", ...}
    (leaf_index is null: events read from files are not trail leaves). Exit status 1 when the rules
    have errors.
    """
    rs = load_rules(_rule_paths(rule_files), compat=compat, match=match, min_priority=min_priority)
    _print_diagnostics(rs, quiet=True)
    with Listing(output, MATCH_COLUMNS) as out:
        for ev in _events(list(event_files)):
            for m in rs.evaluate(ev):
                row = m.to_json()
                if isinstance(row.get("time"), int):  # RFC 3339 like every other listing; the ns beside it
                    row["time_ns"] = row["time"]
                    row["time"] = format_ns(row["time"])
                else:
                    row.setdefault("time", ev.get("stageTimestamp"))
                out.add(row)
    click.echo(f"{out.count} match(es)", err=True)
    if not rs.ok:
        exit_with(FINDINGS)


@rules.command("list", cls=_GreedyCommand)
@click.option("--rules", "rule_files", multiple=True, type=click.Path(dir_okay=False),
              help="Rules files instead of the built-in ruleset (then only those rules are listed). Takes several files.")
@click.option("--data", "data_dir", default=None, type=click.Path(file_okay=False),
              help="Apply this data directory's detect.yaml: its rules files, and what disable: turns off.")
@_compat_options
@output_option
def list_rules(rule_files: tuple[str, ...], data_dir: str | None, compat: str, output: str) -> None:
    """List every detector: Falco-language rules, stateful detectors, credential risks (id, origin, priority).

    Rules come first in evaluation order, then the stateful detectors and the credential risks; with
    --data, `enabled` says what DATA/detect.yaml leaves on (an unknown name there is an error).
    """
    from kubetrail.detect.catalog import catalog, check_names

    settings = None
    paths = _rule_paths(rule_files)
    if data_dir is not None:
        from kubetrail.alerts.config import load_settings

        settings = load_settings(data_dir)
        paths = [*paths, *settings.rules]
    rs = load_rules(paths, compat=compat)
    _print_diagnostics(rs, quiet=True)
    if settings is not None:
        for item in settings.disable:
            if any(item in r.tags for r in rs.rules):
                rs.set_enabled(False, tag=item)
            else:
                rs.set_enabled(False, rule=item)
    found = catalog(rs, settings, builtin_only=bool(rule_files))
    if settings is not None:
        check_names(settings, found, origin=f"{data_dir}/detect.yaml")
    with Listing(output, RULE_COLUMNS) as out:
        for d in found:
            out.add(d.row())
    if not rs.ok:
        exit_with(FINDINGS)


commands: list[click.Command] = [rules]
