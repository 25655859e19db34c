"""kubetrail's exceptions, all in one tree so callers can catch at the right depth.

* KubetrailError
  x ConfigError            bad config file; ``.where`` = "sources[1].path"
  x InputError             an input that cannot be read at all (missing file, unreadable)
  x RuleError              bad rule file; ``.location`` = "file:line:col"
  x StoreError             the store cannot be opened or written
    + StoreVersionError    the data directory was written by a newer kubetrail
    + StoreDamagedError    the database cannot be read (a damaged file, a doctored table)
  x TrailError             signing keys, checkpoints and proofs
  x SourceError            a live source failed (retried by the pipeline)
  x SinkError              delivery failed (retried; the batch stays where it was)

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


class StoreError(KubetrailError):
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
