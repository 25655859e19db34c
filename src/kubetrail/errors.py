"""kubetrail's exceptions, all in one tree so callers can catch at the right depth.

* KubetrailError
  x ConfigError            bad config file; ``.where`` = "sources[1].path"
  x InputError             an input that cannot be read at all (missing file, unreadable), a bad value
  x NotFoundError          what the user named does not exist (a record, an alert, an ambiguous prefix)
  x RuleError              bad rule file; ``.location`` = "file:line:col"
  x StoreError             the store cannot be opened or written
    + StoreVersionError    the data directory was written by a newer kubetrail
    + StoreDamagedError    the database cannot be read (a damaged file, a doctored table)
    + StoreNotFoundError   no store in the data directory (also a NotFoundError)
  x TrailError             signing keys, checkpoints and proofs
  x SourceError            a live source failed (retried by the pipeline)
    + SourceUnavailableError  it cannot start at all: a port in use, a TLS key that does not match its
                           certificate (also an UnavailableError: `run` stops at once, no retry)
  x SinkError              delivery failed (retried; the batch stays where it was)
  x UnavailableError       something a command needs cannot be had: a port in use, a TLS key that
                           does not match its certificate (fail fast, never retried)
* Pushback                 the node's WAL is full (``when_full: block``): back-pressure, not a bug

The CLI turns each into one line on stderr and an exit status (``kubetrail.cli.exitcodes``).

Expected outcomes (a malformed line, a duplicate record) are return values, never exceptions.
"""

from __future__ import annotations


class KubetrailError(Exception):
    """Base of every error kubetrail raises on purpose; the CLI prints these without a traceback."""


class ConfigError(KubetrailError):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message


class InputError(KubetrailError):
    pass


class RuleError(KubetrailError):
    def __init__(self, location: str, message: str) -> None:
        super().__init__(f"{location}: {message}" if location else message)
        self.location = location
        self.message = message


class NotFoundError(KubetrailError):
    pass


class StoreError(KubetrailError):
    pass


class StoreNotFoundError(StoreError, NotFoundError):
    pass


class StoreVersionError(StoreError):
    pass


class StoreDamagedError(StoreError):
    pass


class TrailError(KubetrailError):
    pass


class SourceError(KubetrailError):
    pass


class SinkError(KubetrailError):
    pass


class UnavailableError(KubetrailError):
    pass


class SourceUnavailableError(SourceError, UnavailableError):
    pass


class Pushback(Exception):  # a signal, not an error (STYLE.md 3.5), hence no "Error" suffix
    """The WAL has no room and its policy is ``block``: the caller waits or answers "retry later"."""
