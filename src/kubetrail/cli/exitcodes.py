"""The one exit-status table of the whole CLI, and the one place that maps errors onto it.

Scripts and CI jobs branch on these numbers, so they are a contract (docs/cli.md prints the same
table; ``tests/unit/cli/test_exit_codes.py`` checks both). A command never calls ``sys.exit`` with
a bare number: it exits with one of the names below, or raises an error from ``kubetrail.errors``
and lets ``code_for`` pick the status.

This module is imported by every invocation (``kubetrail --help`` included), so it imports
nothing heavier than ``kubetrail.errors``; the store's engine errors are looked up only once the
store is loaded.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from kubetrail import errors

OK = 0
"""The command did what was asked and found nothing to act on."""
FINDINGS = 1
"""It ran and found something to look at: rejected input, a trail that fails verification, a lint
or check failure, alert deliveries still pending; or it refused to overwrite (an existing trail key)."""
USAGE = 2
"""Bad usage: unknown command or flag, a bad or conflicting value, or what was named does not exist
(no store in --data, no record with that key, an ambiguous key prefix)."""
FAILED = 3
"""It could not do its work: the store is damaged or newer than this kubetrail, a port is in use, a
TLS key does not match its certificate, a source or sink cannot start."""
INTERRUPTED = 130
"""Stopped by Ctrl-C before it finished (``run`` and the servers exit 0 after SIGINT/SIGTERM)."""
PIPE_CLOSED = 141
"""The reader of standard output went away (``| head``): the shells' SIGPIPE status."""

TABLE: list[tuple[int, str, str]] = [
    (OK, "OK", "success; nothing to act on"),
    (FINDINGS, "FINDINGS", "ran and found something: rejected input, verification failure, lint/check "
                           "failure, deliveries still pending; or refused to overwrite (an existing trail key)"),
    (USAGE, "USAGE", "bad command, flag or value; conflicting flags; the named store, record, alert, "
                     "credential or file does not exist; an ambiguous key prefix"),
    (FAILED, "FAILED", "could not do the work: damaged or newer store, port in use, TLS key not matching "
                       "its certificate, a source or sink that cannot start"),
    (INTERRUPTED, "INTERRUPTED", "stopped by Ctrl-C (servers exit 0 after SIGINT/SIGTERM)"),
    (PIPE_CLOSED, "PIPE_CLOSED", "standard output was closed early (`| head`)"),
]

# Most specific first: the first class an error is an instance of decides.
_BY_ERROR: list[tuple[type[BaseException], int]] = [
    (errors.NotFoundError, USAGE),
    (errors.StoreVersionError, FAILED),
    (errors.StoreError, FAILED),
    (errors.SourceError, FAILED),
    (errors.SinkError, FAILED),
    (errors.UnavailableError, FAILED),
    (errors.ConfigError, USAGE),
    (errors.InputError, USAGE),
    (errors.RuleError, USAGE),
    (errors.TrailError, USAGE),
    (errors.KubetrailError, USAGE),
]


def code_for(exc: BaseException) -> int:
    """The exit status for an error that reached the top of the CLI."""
    for cls, code in _BY_ERROR:
        if isinstance(exc, cls):
            return code
    if is_damaged_store(exc):
        return FAILED
    return FAILED


def is_damaged_store(exc: BaseException) -> bool:
    """One of the store's ``damaged_errors()`` (a damaged file, a full disk), without importing the
    store to ask: such an error can only come from a store that was loaded."""
    store = sys.modules.get("kubetrail.store")
    return store is not None and isinstance(exc, store.damaged_errors())


def exit_with(code: int) -> NoReturn:
    """``sys.exit`` with a status from this table (the name documents which one)."""
    sys.exit(code)
