"""Telemetry: named events move the metrics they declare, log one JSON line, follow the naming rules."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import typing
from collections import Counter
from pathlib import Path

import orjson
import pytest

from kubetrail import telemetry
from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import AuditMeta, Decoded, Record, Redaction, Rejected, SourceRef
from kubetrail.testing import capture_events, make_event

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reference" / "metrics.md"
NAMESPACES = ("Source", "Store", "Redact", "Trail", "Detect", "Alert", "Buffer", "Broker", "Webhook", "Web")
UNITS = ("_seconds", "_bytes", "_leaves", "_records", "_alerts")


def scrape() -> dict[str, float]:
    text = telemetry.render()[0].decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def sample(cls: type[telemetry.Event]) -> telemetry.Event:
    """An instance of ``cls`` with plausible values for each field."""
    values: dict[str, object] = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        hint = hints[field.name]
        if hint is int or field.name in ("code",):
            values[field.name] = 7 if field.name != "code" else 418
        elif hint is float:
            values[field.name] = 12.5
        elif hint == (int | None):
            values[field.name] = 9
        else:
            values[field.name] = f"test-{field.name}"
    return cls(**values)


def series(name: str, snapshot: dict[str, float]) -> dict[str, float]:
    stem = name.removesuffix("_total")
    return {k: v for k, v in snapshot.items() if k.split("{")[0] in (name, f"{stem}_bucket", f"{stem}_count")}


@pytest.mark.parametrize("cls", telemetry.events(), ids=lambda c: c.__name__)
def test_each_event_moves_exactly_the_metrics_it_declares(cls: type[telemetry.Event]) -> None:
    """Emitting one event changes every metric in its ``moves`` (and they all exist in METRICS)."""
    names = {m.name for m in telemetry.METRICS}
    assert cls.moves and set(cls.moves) <= names
    before = scrape()
    if cls is telemetry.WebhookConnectionRefused:  # one event, four metrics: one per reason
        for reason in typing.get_args(telemetry.WebhookRefusal):
            telemetry.emit(telemetry.WebhookConnectionRefused(reason))
    else:
        telemetry.emit(sample(cls))
    after = scrape()
    for name in cls.moves:
        assert series(name, after) != series(name, before) or name.endswith("_age_seconds"), name
        assert series(name, after), f"{name} is not exposed"
    moved = {k.split("{")[0] for k in after if after[k] != before.get(k) and k.startswith("kubetrail_")}
    declared = set(cls.moves) | {n.removesuffix("_seconds") + s for n in cls.moves for s in ("_seconds_bucket",
                                                                                              "_seconds_count",
                                                                                              "_seconds_sum")}
    assert moved <= declared | {"kubetrail_trail_checkpoint_age_seconds"}, moved - declared


def test_names_follow_the_style_guide() -> None:
    """Events are <Namespace><Noun><Verb>[Error]; metrics kubetrail_<ns>_..._total or with a unit."""
    for cls in telemetry.events():
        assert cls.__name__.startswith(NAMESPACES), cls.__name__
        assert re.fullmatch(r"(?:[A-Z][a-z]+){3,}", cls.__name__), cls.__name__
        assert re.search(r"(ed|Written|Sent|Error)$", cls.__name__), cls.__name__
    for m in telemetry.METRICS:
        assert m.name.startswith("kubetrail_")
        assert (m.name.endswith("_total") == (m.type == "counter")), m.name
        assert m.type == "counter" or m.name.endswith(UNITS), m.name


def test_emit_logs_one_json_line_and_reaches_listeners(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="kubetrail.events"), capture_events() as seen:
        telemetry.emit(telemetry.AlertSinkSendError(sink="slack", error="HTTP 500"))
    assert seen == [telemetry.AlertSinkSendError(sink="slack", error="HTTP 500")]
    [record] = [r for r in caplog.records if r.name == "kubetrail.events"]
    assert record.levelno == logging.WARNING
    assert orjson.loads(record.getMessage()) == {"event": "AlertSinkSendError", "sink": "slack", "error": "HTTP 500"}


def test_checkpoint_age_is_absent_until_a_checkpoint_then_counts_up() -> None:
    telemetry.emit(telemetry.TrailCheckpointSigned(origin="o", size=10, timestamp=1000.0))
    snap = scrape()
    assert snap["kubetrail_trail_checkpoint_size_leaves"] == 10
    assert snap["kubetrail_trail_checkpoint_age_seconds"] > 1_000_000  # 1970 + 1000 s is long ago


def test_openmetrics_when_asked() -> None:
    body, ctype = telemetry.render("application/openmetrics-text; version=1.0.0")
    assert ctype.startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")
    assert telemetry.render()[1].startswith("text/plain; version=0.0.4")


def test_pipeline_commit_counts_in_out_duplicates_rejects_and_redactions(tmp_path: Path) -> None:
    """A real pipeline: 3 events in (one carrying a token), stored; again: 3 duplicates; 1 reject."""
    source = SourceRef(node="t-node", stream=f"file:{tmp_path}/a.log")
    label = source.label()
    secret = make_event("00000000-0000-0000-0000-00000000000c", resource="secrets", verb="create",
                        requestObject={"kind": "Secret", "data": {"password": "aHVudGVyMg=="}})
    events = [make_event(f"00000000-0000-0000-0000-00000000000{i}") for i in range(2)] + [secret]
    decoded = [Decoded(e, "json", f"a.log:{i}") for i, e in enumerate(events)]
    pipe = open_pipeline(Options(data_dir=str(tmp_path / "data"), detect=False))
    try:
        before = scrape()
        pipe.ingest_items(decoded, source)
        pipe.ingest_items([*decoded, Rejected("a.log:9", "not JSON")], source)
        after = scrape()
    finally:
        pipe.close()
        pipe.store.close()

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    labels = f'{{kind="audit",source="{label}"}}'
    assert delta(f"kubetrail_source_records_total{labels}") == 6
    assert delta(f"kubetrail_store_records_total{labels}") == 3
    assert delta(f"kubetrail_store_duplicates_total{labels}") == 3
    assert delta(f"kubetrail_source_records_rejected_total{labels}") == 1
    assert delta("kubetrail_store_commit_duration_seconds_count") == 2
    assert after["kubetrail_trail_size_leaves"] == 3
    redacted = sum(v - before.get(k, 0.0) for k, v in after.items() if k.startswith("kubetrail_redact_values_total"))
    assert redacted >= 1


def _commit_events_reference(records: list[Record], stored: list[Record], duplicates: int) -> list[tuple[str, str, str, int]]:
    """What emit_commit emitted before it counted by source object (one labelled pass per list)."""
    received = Counter((r.source.label(), r.kind) for r in records)
    written = Counter((r.source.label(), r.kind) for r in stored)
    out, left = [], duplicates
    for (src, kind), n in received.items():
        out.append(("SourceRecordsReceived", src, kind, n))
        if written[(src, kind)]:
            out.append(("StoreRecordsWritten", src, kind, written[(src, kind)]))
        dups = min(left, n - written[(src, kind)])
        if dups:
            left -= dups
            out.append(("StoreDuplicatesSkipped", src, kind, dups))
    for (kind, what), n in Counter((r.kind, red.what) for r in stored for red in r.redactions).items():
        out.append(("RedactValuesRemoved", kind, what, n))
    return out


@pytest.mark.parametrize("stored_every", [1, 2, 3])
def test_commit_counts_per_source_and_kind_as_one_labelled_pass_did(stored_every: int) -> None:
    """Equal SourceRefs that are distinct objects, two kinds, two sources, redactions; all stored or some."""
    a1, a2, b = SourceRef(node="n1", stream="file:a"), SourceRef(node="n1", stream="file:a"), SourceRef(stream="file:b")
    records = []
    for i in range(30):
        red = [Redaction(path="requestObject.data", hmac="ab" * 8, what="secret_data")] if i % 4 == 0 else []
        records.append(Record(kind="audit" if i % 5 else "container", key=f"k{i}", time=i, source=(a1, a2, b)[i % 3],
                              body=b"{}", meta=AuditMeta(), redactions=red))
    stored = records[::stored_every]
    dups = len(records) - len(stored) - (1 if stored_every == 3 else 0)
    with capture_events() as seen:
        telemetry.emit_commit(records, stored, dups, 0, 0.01, 30)
    got = [(type(e).__name__, *dataclasses.astuple(e)) for e in seen if not isinstance(e, telemetry.StoreBatchCommitted)]
    assert got == _commit_events_reference(records, stored, dups)
    assert any(name == "StoreDuplicatesSkipped" for name, *_ in got) == (stored_every > 1)


def test_reference_doc_is_generated_from_the_table() -> None:
    """docs/reference/metrics.md holds exactly what reference_markdown() prints."""
    text = DOC.read_text()
    begin, end = "<!-- BEGIN generated by kubetrail.telemetry.reference_markdown -->\n", "<!-- END generated -->"
    head, rest = text.split(begin)
    current = rest.split(end)[0]
    if os.environ.get("KUBETRAIL_WRITE_DOCS") and current != telemetry.reference_markdown():
        DOC.write_text(head + begin + telemetry.reference_markdown() + end + rest.split(end)[1])
        current = telemetry.reference_markdown()
    assert current == telemetry.reference_markdown(), "regenerate: KUBETRAIL_WRITE_DOCS=1 pytest " + __file__


def test_one_registry_when_the_first_emit_and_the_first_scrape_race() -> None:
    """An agent's first commit (pipeline thread) and Prometheus' first scrape (probe thread) at once:
    with two registries the first commit's counts were lost (tests/integration/test_agent_probes.py
    failed under load). A fresh process, eight threads asking at the same moment."""
    import subprocess
    import sys

    code = ("import threading\nfrom kubetrail import telemetry\nb = threading.Barrier(8); seen = []\n"
            "def go():\n    b.wait(); seen.append(id(telemetry._metrics()))\n"
            "ts = [threading.Thread(target=go) for _ in range(8)]\n[t.start() for t in ts]; [t.join() for t in ts]\n"
            "print(len(set(seen)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "1"
