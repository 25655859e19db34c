"""Where detection and credentials run with ``--workers`` (``pipeline.open_pipeline``): in a process of
their own with 3 CPUs or more or for a live ``run``; in the writer on 2 CPUs, which then keeps to
smaller memory caps for as long as the pipeline is open (and gives them back at close)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetrail import ordering, pipeline
from kubetrail.consumer_process import ConsumerProcess
from kubetrail.detect.consumer import DetectConsumer
from kubetrail.pipeline import LEAN_BUFFERS, LEAN_CACHE_KIB, Options, open_pipeline
from kubetrail.store import sqlite_schema


def _arrangement(tmp_path: Path, name: str, **kw: object) -> tuple[bool, bool, tuple[int, int], int]:
    """(consumers apart, detection in the writer, buffer caps and SQLite cache while open)."""
    pipe = open_pipeline(Options(data_dir=str(tmp_path / name), **kw))  # type: ignore[arg-type]
    try:
        caps = (ordering._budget["memory_bytes"], ordering._budget["parsed_bytes"])
        return (pipe.apart is not None, any(isinstance(c, DetectConsumer) for c in pipe.consumers), caps,
                sqlite_schema.CACHE_KIB)
    finally:
        pipe.close()
        pipe.store.close()


@pytest.mark.parametrize("cpus", [2, 4])
def test_by_the_cpu_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpus: int) -> None:
    defaults = (ordering._budget["memory_bytes"], ordering._budget["parsed_bytes"]), sqlite_schema.CACHE_KIB
    monkeypatch.setattr(pipeline, "cpus", lambda: cpus)
    apart, here, caps, cache = _arrangement(tmp_path, "w", workers=1)
    if cpus == 2:
        assert (apart, here, caps, cache) == (False, True, LEAN_BUFFERS, LEAN_CACHE_KIB)
    else:
        assert (apart, here, caps, cache) == (True, False, *defaults)
    # given back at close: later pipelines (and buffers) of this process get the defaults
    assert ((ordering._budget["memory_bytes"], ordering._budget["parsed_bytes"]), sqlite_schema.CACHE_KIB) == defaults
    assert _arrangement(tmp_path, "none", workers=0)[:2] == (False, True)


def test_live_and_explicit_choices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "cpus", lambda: 2)
    assert _arrangement(tmp_path, "live", workers=1, live=True)[:2] == (True, False)  # run: always apart
    assert _arrangement(tmp_path, "forced", workers=1, apart=True)[:2] == (True, False)
    monkeypatch.setattr(pipeline, "cpus", lambda: 8)
    assert _arrangement(tmp_path, "kept", workers=1, apart=False)[:2] == (False, True)


def test_a_consumer_process_is_one_of_the_consumers_when_apart(tmp_path: Path) -> None:
    pipe = open_pipeline(Options(data_dir=str(tmp_path / "d"), workers=1, apart=True))
    try:
        assert isinstance(pipe.consumers[-1], ConsumerProcess) and pipe.workers is not None
    finally:
        pipe.close()
        pipe.store.close()
