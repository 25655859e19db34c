"""Where detection and credentials run with ``--workers`` (``pipeline.open_pipeline``): in a process of
their own with 3 CPUs or more or for a live ``run``; in the writer on 2 CPUs, which then keeps to
smaller memory caps for as long as the pipeline is open (and gives them back at close)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetrail import ordering, pipeline
from kubetrail.consumer_process import ConsumerProcess
from kubetrail.detect.consumer import DetectConsumer
from kubetrail.detect.engine import MATCHES
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


def _chunk() -> bytes:
    import orjson

    from kubetrail.testing import make_event

    pod = make_event("p-1", verb="create", resource="pods", namespace="shop", name="web-1", user="system:node:n1",
                     responseObject={"kind": "Pod", "metadata": {"name": "web-1"}, "spec": {"nodeName": "n1"},
                                     "status": {"podIP": "10.1.0.7", "hostIP": "192.168.0.9"}})
    sa = make_event("t-1", user="system:serviceaccount:shop:web", resource="secrets", namespace="shop",
                    source_ips=["203.0.113.9"])
    sa["user"]["extra"] = {"authentication.kubernetes.io/pod-name": ["web-1"],
                           "authentication.kubernetes.io/node-name": ["n1"]}
    plain = make_event("g-1", user="system:anonymous", groups=["system:unauthenticated"], resource="secrets",
                       verb="list", source_ips=["198.51.100.7"])
    return b"".join(orjson.dumps(e) + b"\n" for e in (pod, sa, plain))


def test_a_worker_s_rule_matches_are_the_consumer_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from kubetrail import workers
    from kubetrail.alerts.config import DetectSettings
    from kubetrail.detect.consumer import build_ruleset
    from kubetrail.record import SourceRef
    from kubetrail.sources.files import read_stream
    from kubetrail.stages.extract import to_record
    from kubetrail.stages.redaction_key import load_or_create

    key = load_or_create(str(tmp_path / "k"))
    rules = build_ruleset(DetectSettings())
    monkeypatch.setattr(workers, "_state", {"key": key, "rules": rules})
    src = SourceRef(stream="f")
    ready = [i for i in workers.unpack(workers.prepare(_chunk(), 1, src), "f") if isinstance(i, workers.Ready)]
    here = [to_record(d, src, key) for d in read_stream(io.BytesIO(_chunk()), "f")]
    assert len(ready) == len(here) == 3
    found = [[(m.rule, m.output) for m in r.record.__dict__[MATCHES]] for r in ready]
    assert found == [[(m.rule, m.output) for m in rules.evaluate(h)] for h in here]
    assert any(found)  # the anonymous list of secrets matches a rule


def test_a_failure_of_the_rules_in_a_worker_never_costs_the_event(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules raising in a worker: the record is stored as in one process and carries no matches, so
    the consumer evaluates it itself (and meets the failure where one process would)."""
    from kubetrail import workers
    from kubetrail.record import SourceRef
    from kubetrail.stages.redaction_key import load_or_create

    class Broken:
        def evaluate(self, record: object) -> list[object]:
            raise RuntimeError("a rule bug")

    monkeypatch.setattr(workers, "_state", {"key": load_or_create(str(tmp_path / "k")), "rules": Broken()})
    items = list(workers.unpack(workers.prepare(_chunk(), 1, SourceRef(stream="f")), "f"))
    assert [type(i).__name__ for i in items] == ["Ready", "Ready", "Ready"]
    assert all(MATCHES not in i.record.__dict__ for i in items)  # type: ignore[union-attr]


def test_a_broken_rules_file_is_one_clear_error_with_workers(tmp_path: Path) -> None:
    """The workers start before the writer loads its rules: a rules file that does not load is the
    writer's clear error and exit status 2, with no traceback from a worker on stderr."""
    import subprocess
    import sys

    from kubetrail.demo.scenario import generate

    log = tmp_path / "a.log"
    log.write_bytes(generate(events=50).lines())
    (tmp_path / "bad.yaml").write_text("- rule: x\n  condition: ka.verb = get\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "detect.yaml").write_text(f"rules: [{tmp_path / 'bad.yaml'}]\n")
    r = subprocess.run([sys.executable, "-m", "kubetrail", "ingest", "--workers", "2", "--data", str(tmp_path / "d"),
                        str(log)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "bad.yaml" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_workers_fork_only_from_a_writer_without_other_threads() -> None:
    import threading

    from kubetrail import workers

    assert workers._may_fork() == (threading.active_count() == 1)  # earlier tests may leave threads
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert not workers._may_fork()
    finally:
        stop.set()
        t.join()
