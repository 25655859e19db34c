"""Stateful detectors run only for the verbs and resources they declare (``verbs``/``resources``,
dispatched by detect/consumer.py): a detector never acts on a request outside them, so the alerts
and the detector state are what running every detector on every request gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from kubetrail.demo.scenario import generate
from kubetrail.detect import consumer as detect_consumer
from kubetrail.detect.stateful import DETECTORS
from kubetrail.stages.redaction_key import load_or_create
from kubetrail.store.testing import execute as sql

from ._ingest import ingested


def _timeless(value: str) -> Any:
    """A detector's state without the wall-clock time it was saved at (audit silence keeps one)."""
    doc = orjson.loads(value)
    if isinstance(doc, dict):
        doc.pop("wall", None)
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def _ingest(path: Path, data: Path, key_from: Path) -> dict[str, Any]:
    with ingested(path, data, key_from) as s:
        return {
            "alerts": sorted(tuple(r) for r in sql(s, "SELECT origin, rule, subject, priority, time, output, "
                                                      "fields_json, dedup_key, suppressed FROM alerts")),
            "state": sorted((r[0], r[1], _timeless(r[2])) for r in sql(s, "SELECT detector, key, value FROM detector_state")),
        }


def test_every_declared_detector_narrows_something() -> None:
    declared = [d for d in DETECTORS if getattr(d, "verbs", None) is not None or getattr(d, "resources", None)]
    assert len(declared) >= 8


def test_dispatch_changes_no_alert_and_no_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in generate(events=2500).events))
    key = tmp_path / "redaction.key"
    load_or_create(str(key))
    dispatched = _ingest(path, tmp_path / "dispatch", key)
    monkeypatch.setattr(detect_consumer.DetectConsumer, "_observers",
                        lambda self, verb, resource: tuple(self.detectors))
    everyone = _ingest(path, tmp_path / "all", key)
    stateful = {a[1] for a in everyone["alerts"] if a[0] == "stateful"}
    assert len(stateful) >= 4, stateful  # the scenario's attack raises alerts of dispatched detectors
    assert dispatched == everyone

