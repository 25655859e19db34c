"""One `kubetrail ingest` into a fresh data directory sharing a redaction key, for the speed tests
that compare an optimised path with the old one: both runs must key and redact alike, so only the
path under test differs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.stages.redaction_key import KEY_FILE
from kubetrail.store import Store, open_store


@contextmanager
def ingested(path: Path, data: Path, key_from: Path) -> Iterator[Store]:
    """The store after ingesting ``path`` in one process (``--workers 0``), opened read-only."""
    data.mkdir()
    shutil.copy(key_from, data / KEY_FILE)
    result = CliRunner().invoke(cli, ["ingest", str(path), "--data", str(data), "--no-progress", "--workers", "0"])
    assert result.exit_code == 0, result.output
    with open_store(str(data), readonly=True) as store:
        yield store
