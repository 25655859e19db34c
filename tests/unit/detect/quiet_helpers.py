"""Shared by the issue-15 detection tests: ingest a generated corpus like `kubetrail ingest`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from kubetrail.alerts.alert import Alert
from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import SourceRef
from kubetrail.sources.files import read_paths
from kubetrail.store import Store, open_store

SETTINGS = {"stateful": {"learning_secs": 600}}


def ingest(data: Path, events: list[dict[str, Any]], settings: dict[str, Any] | None = None) -> Store:
    """Write the events as an audit log and ingest it like `kubetrail ingest` (detection on)."""
    data.mkdir(parents=True, exist_ok=True)
    (data / "detect.yaml").write_text(orjson.dumps(settings or SETTINGS).decode())
    log = data.parent / f"{data.name}.log"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    pipe = open_pipeline(Options(data_dir=str(data)))
    try:
        pipe.ingest_items(read_paths([str(log)]), SourceRef(stream="audit-file"))
    finally:
        pipe.close()
        pipe.store.close()
    return open_store(str(data), create=False)


def describe(alerts: list[Alert]) -> str:
    return "\n".join(f"{a.priority} {a.rule} [{a.subject}] x{a.count}: {a.output}" for a in alerts)
