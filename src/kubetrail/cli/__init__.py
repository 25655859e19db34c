"""The ``kubetrail`` command line: the registry below names every top-level command and its module.

Commands load lazily: ``kubetrail --help`` imports no command module (it lists the summaries from
``COMMANDS``), and ``kubetrail query`` imports only ``cli/query.py`` and what that uses, so a
command starts in well under 150 ms (budgeted by ``tests/unit/cli/test_startup.py``).

To add a command: write ``cli/<module>.py`` exposing ``commands: list[click.Command]``, add one
line per top-level command here (name, module, the first sentence of its help), then follow
docs/cli.md's conventions (``--data``, ``--json``/``-o``, exit statuses from ``cli/exitcodes.py``,
one-line errors); ``tests/unit/cli/test_conventions.py`` checks every command listed here.

Errors kubetrail raises on purpose (``KubetrailError``) are printed as one line and exit with the
status ``exitcodes.code_for`` picks; a traceback is always a bug.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any, NamedTuple

import click

from kubetrail.cli import exitcodes
from kubetrail.errors import KubetrailError


class Entry(NamedTuple):
    module: str
    summary: str  # the first sentence of the command's help; checked by tests/unit/cli/test_registry.py


# The whole command registry, in the order `kubetrail --help` shows it.
COMMANDS: dict[str, Entry] = {
    # capture and search
    "ingest": Entry("ingest", "Read audit events from files, directories, .gz files or - (stdin), in any "
                              "delivery format."),
    "query": Entry("query", "Search stored audit events; filters combine with AND, repeated values with OR."),
    "show": Entry("query", "Print one stored record (by key, key prefix or leaf index): its metadata and its "
                            "redacted body."),
    "timeline": Entry("timeline", "Print one story in time order: a subject's requests, the alerts they raised, "
                                  "credential changes."),
    "stats": Entry("query", "Counts of what the store holds: entries, ingest counters, top users, verbs, "
                             "resources."),
    "run": Entry("run", "Run the configured live sources until SIGINT/SIGTERM, then flush positions and exit 0."),
    "agent": Entry("agent", "Run the node agent's sources (cri_logs, journald, textfile, k8s_events, audit) until "
                            "SIGINT/SIGTERM."),
    "logs": Entry("logs", "Search stored log lines (containers, nodes, Kubernetes events), oldest first by event "
                          "time."),
    "collector": Entry("collector", "Store what the agents shipped through the broker until SIGINT/SIGTERM, "
                                    "then exit 0."),
    "buffer": Entry("buffer", "The agent's disk WAL (the node buffer between the sources and the broker)."),
    "webhook": Entry("webhook", "The audit webhook receiver (the apiserver's webhook backend)."),
    "webhook-config": Entry("webhook", "Print the kubeconfig for kube-apiserver's --audit-webhook-config-file."),
    "demo": Entry("demo", "Run the bundled attack scenario: a 2-hour audit log with an attack hidden in "
                          "ordinary traffic."),
    # the tamper-evident trail
    "keys": Entry("trail", "The trail's Ed25519 signing key (C2SP signed-note key format)."),
    "checkpoint": Entry("trail", "Print the latest signed checkpoint (a C2SP tlog-checkpoint in a signed note)."),
    "proof": Entry("trail", "RFC 9162 inclusion and consistency proofs (hashes in lowercase hex)."),
    "verify": Entry("trail", "Recompute the whole trail; exit 0 if intact, 1 naming the first bad index and why."),
    "retention": Entry("trail", "Delete old event bodies and give the space back; entries and leaf hashes stay, so `verify` stays green."),
    "store": Entry("store", "Maintain the store (re-key entries stored under an older key version)."),
    # detect and alert
    "rules": Entry("rules", "Falco-language detection rules: lint, test over events, list."),
    "detect": Entry("alerts", "Run detection over events already stored (alerts already raised are not raised "
                              "again)."),
    "alerts": Entry("alerts", "List stored alerts (one JSON object per alert with --json, evidence included)."),
    # credentials
    "creds": Entry("creds", "Every client certificate and token seen in the trail: who made it, who approved "
                            "it, where it was used."),
    # posture and deployment
    "policy": Entry("policy", "Generate, lint, simulate and explain Kubernetes audit policies."),
    "check": Entry("policy", "Check that audit logging is really on."),
    "deploy": Entry("deploy", "Write deployment files (see docs/deploy.md)."),
    # see it
    "serve": Entry("serve", "Serve the dashboard and the JSON API (read-only, authenticated) until SIGINT/SIGTERM."),
    "status": Entry("status", "Sources, trail, checkpoint, verify and alerts at a glance; exit 1 if a source is "
                              "silent or verify fails."),
    # the shell
    "completion": Entry("completion", "Print the shell completion script for bash, zsh or fish."),
}


class _PipeClosed(Exception):
    """Standard output's reader went away; raised past click, which would exit 1 (= findings) for it."""


class _LazyCommands(MutableMapping[str, click.Command]):
    """``group.commands`` as click and callers expect it (names, lookup), importing a command's
    module only when that command is looked up."""

    def __init__(self) -> None:
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            entry = COMMANDS.get(name)
            if entry is None:
                raise KeyError(name)
            # the import statement's machinery (not importlib.import_module) so `-X importtime` times it
            module = __import__(f"kubetrail.cli.{entry.module}", fromlist=["commands"])
            found = [c for c in module.commands if c.name == name]
            if not found:
                raise LookupError(f"kubetrail.cli.{entry.module} has no command {name!r} (fix COMMANDS)")
            self._loaded[name] = found[0]
        return self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or name in self._loaded

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (n for n in self._loaded if n not in COMMANDS)

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self._loaded))


class _Cli(click.Group):
    """Loads a command's module only when that command runs (or its help is asked for)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _LazyCommands()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                              list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib  # only for a mistyped command: ~6 ms of every start-up otherwise

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            hint = f"; did you mean `kubetrail {close[0]}`?" if close else ""
            ctx.fail(f"No such command {name!r}{hint}")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            raise _PipeClosed() from exc

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the registry's summaries: no command module is imported for it."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            entry = COMMANDS.get(name)
            summary = entry.summary if entry else self.commands[name].get_short_help_str(limit)
            rows.append((name, _shorten(summary, limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102 - the one place exit statuses are set
        kwargs["standalone_mode"] = False
        try:
            status = super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            status = exc.exit_code
        except click.ClickException as exc:
            click.echo(f"error: {_one_line(exc)}", err=True)
            status = exitcodes.USAGE
        except click.Abort:
            click.echo("interrupted", err=True)
            status = exitcodes.INTERRUPTED
        except KubetrailError as exc:
            click.echo(f"error: {exc}", err=True)
            status = exitcodes.code_for(exc)
        except (BrokenPipeError, _PipeClosed):
            _quiet_stdout()
            status = exitcodes.PIPE_CLOSED
        except OSError as exc:
            if exc.errno not in DISK_FULL_ERRNOS:
                raise
            click.echo(f"error: the disk is full: {exc.filename or 'a file'} could not be written ({exc.strerror}); "
                       "free space and run the command again", err=True)
            status = exitcodes.FAILED
        except Exception as exc:
            if not exitcodes.is_damaged_store(exc):
                raise
            from kubetrail.store import store_failure

            click.echo(f"error: {store_failure(exc)}", err=True)
            status = exitcodes.FAILED
        sys.exit(status if isinstance(status, int) else exitcodes.OK)


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _one_line(exc: click.ClickException) -> str:
    """click's usage errors as one line that names the help to read (not click's three-line block)."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        return f"{message} (see `{ctx.command_path} --help`)"
    return message


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 3, 1)].rstrip() + "..."


def _quiet_stdout() -> None:
    """After the reader went away, stop Python from complaining about the unflushed stdout at exit."""
    import contextlib
    import os

    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="kubetrail")
def cli() -> None:
    """kubetrail: a tamper-evident audit trail, credential inventory and detections for Kubernetes.

    Every data command takes --data DIR (default ./kubetrail-data, or $KUBETRAIL_DATA) and --json;
    listings take -o table|wide|json|yaml. Exit status: 0 ok, 1 findings, 2 usage or not found,
    3 failed (docs/cli.md).
    """


def main() -> None:
    cli.main(prog_name="kubetrail")
