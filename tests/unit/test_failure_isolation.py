"""The rule is structural: a failure at any stage of one event's way into the store (decode,
extract, key, row building, insert) costs that event only. Each test injects a failure at one
stage for the event ``boom`` and shows that its neighbours are stored, in order, that the reject
names the input position and the error type, that the source position still commits, and that
the trail verifies afterwards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from kubetrail import pipeline
from kubetrail.cli import cli
from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import Decoded, Record, SourceRef
from kubetrail.sources import formats
from kubetrail.stages import extract
from kubetrail.store.queries import QueryFilters
from kubetrail.testing import make_event

NAMES = ["a", "b", "boom", "c", "d"]


def _decode_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    real = formats.check_event

    def check(obj: Any) -> str | None:
        if isinstance(obj, dict) and obj.get("auditID") == "boom":
            raise AttributeError("decoder bug")
        return real(obj)

    monkeypatch.setattr(formats, "check_event", check)


def _extract_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    real = extract.extract_meta

    def meta(event: dict, lossy: list[str] | None = None) -> Any:
        if event.get("auditID") == "boom":
            raise KeyError("extract bug")
        return real(event, lossy)

    monkeypatch.setattr(extract, "extract_meta", meta)


def _key_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    real = extract.event_key

    def key(event: dict) -> str:
        if event.get("auditID") == "boom":
            raise ValueError("key bug")
        return real(event)

    monkeypatch.setattr(extract, "event_key", key)


def _poison_record(change: Callable[[Record], None]) -> Callable[[pytest.MonkeyPatch], None]:
    """A record that reaches the store with a value the row or the insert cannot take."""
    def inject(monkeypatch: pytest.MonkeyPatch) -> None:
        real = pipeline.to_record

        def to_record(decoded: Decoded, source: SourceRef, key: Any = None) -> Record:
            r = real(decoded, source, key)
            if r.meta.audit_id == "boom":
                change(r)
            return r

        monkeypatch.setattr(pipeline, "to_record", to_record)
    return inject


def _row_fails(r: Record) -> None:
    r.meta.groups = [object()]  # type: ignore[list-item]  # the row's JSON column cannot be built


def _insert_fails(r: Record) -> None:
    r.meta.code = 1 << 70  # SQLite integers are 64-bit


STAGES = {"decode": _decode_fails, "extract": _extract_fails, "key": _key_fails,
          "row": _poison_record(_row_fails), "insert": _poison_record(_insert_fails)}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_ingest_loses_only_the_failing_event(stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    STAGES[stage](monkeypatch)
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(orjson.dumps(make_event(n)) + b"\n" for n in NAMES))
    data = str(tmp_path / "d")
    r = CliRunner().invoke(cli, ["ingest", str(log), "--no-detect", "--json", "--data", data])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output  # 1: one event rejected
    doc = orjson.loads(r.stdout.strip().splitlines()[-1])
    assert (doc["stored"], doc["rejected"]) == (4, 1)
    [reject] = [orjson.loads(x) for x in (tmp_path / "d" / "rejects.jsonl").read_bytes().splitlines()]
    assert reject["position"] == f"{log}:3" and "cannot be" in reject["reason"], reject
    r = CliRunner().invoke(cli, ["query", "--json", "--data", data])
    assert [orjson.loads(x)["auditID"] for x in r.stdout.splitlines()] == ["a", "b", "c", "d"]
    monkeypatch.undo()
    r = CliRunner().invoke(cli, ["verify", "--deep", "--json", "--data", data])
    assert orjson.loads(r.stdout.strip().splitlines()[-1])["ok"] is True, r.output


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_live_batch_loses_only_the_failing_event(stage: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The live sources' entry point (tailer, webhook): the position commits with the neighbours,
    so the tailer moves on instead of retrying the same chunk forever."""
    STAGES[stage](monkeypatch)
    pipe = open_pipeline(Options(data_dir=str(tmp_path / "d"), detect=False))
    try:
        items = [item for i, n in enumerate(NAMES)
                 for item in formats.decode_line(orjson.dumps(make_event(n)), f"live@{i}")]
        decoded = [i for i in items if isinstance(i, Decoded)]
        rejected = [i for i in items if not isinstance(i, Decoded)]
        stored = pipe.commit_decoded(decoded, rejected, SourceRef(stream="test"), {"src": "offset-5"})
        assert [r.meta.audit_id for r in stored] == ["a", "b", "c", "d"]
        assert pipe.store.position("src") == "offset-5" and pipe.summary.rejected == 1
        assert [r.meta.audit_id for r in pipe.store.query(QueryFilters())] == ["a", "b", "c", "d"]
        assert [r.leaf_index for r in stored] == [0, 1, 2, 3]
    finally:
        pipe.close()
        pipe.store.close()
    assert "live@2" in (tmp_path / "d" / "rejects.jsonl").read_text()


def test_a_failing_store_is_not_a_reject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full, a locked or broken database: the batch fails whole (and is retried by its source);
    no event is rejected for a fault of the machine."""
    import sqlite3

    pipe = open_pipeline(Options(data_dir=str(tmp_path / "d"), detect=False))
    try:
        def full(*_: Any, **__: Any) -> Any:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(pipe.store, "append", full)
        decoded = [Decoded(make_event(n), "event", f"p{i}") for i, n in enumerate(NAMES)]
        with pytest.raises(sqlite3.OperationalError):
            pipe.commit_decoded(decoded, [], SourceRef(stream="test"), {"src": "offset-5"})
        assert pipe.summary.rejected == 0
    finally:
        monkeypatch.undo()
        pipe.close()
        pipe.store.close()
    assert not (tmp_path / "d" / "rejects.jsonl").exists()
