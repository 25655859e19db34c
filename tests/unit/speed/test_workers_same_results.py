"""``kubetrail ingest --workers N`` gives what the single-process pipeline gives: the same records in
the same leaf order (docs/specs/trail-format.md, "Leaf order"), the same entries, rejects, alerts (with
their occurrences) and credential inventory — with workers, detection and credentials run in their own
process on the committed leaves (``kubetrail.consumer_process``) with 3 CPUs or more; on 2 they stay
in the writer and the workers evaluate the rules while each event is parsed."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from kubetrail import pipeline, workers
from kubetrail.cli import cli
from kubetrail.demo.scenario import generate
from kubetrail.stages.redaction_key import KEY_FILE, load_or_create
from kubetrail.store import open_store
from kubetrail.store.rows import ENTRY_SELECT, row_entry
from kubetrail.store.testing import execute as sql
from kubetrail.testing import make_event


def _input(tmp: Path, plain: bool = False) -> Path:
    """The demo scenario (attack, credentials) mixed with every shape the line reader handles; gzip
    (the writer cuts it into chunks) or plain (the workers read byte ranges of it themselves)."""
    lines = [orjson.dumps(e) for e in generate(events=1200).events]
    odd = [
        b"",  # blank lines are counted in positions
        b"not json at all",
        b'{"kind": "EventList", "items": [' + lines[5] + b", " + lines[6] + b"]}",
        b"2024-05-01T10:00:00.000000000Z stdout F " + lines[7],
        b"apiVersion: audit.k8s.io/v1",  # a YAML block: runs to the next JSON line
        b"kind: Event",
        b"auditID: yaml-1",
        b'stage: ResponseComplete',
        b"verb: get",
        b"requestURI: /api/v1/namespaces",
        b'{"kind": "Event", "auditID": 5}',
        b"   ",
        lines[9],  # a duplicate
        b"\xef\xbb\xbf" + lines[10],
    ]
    out: list[bytes] = []
    for i, line in enumerate(lines):
        out.append(line)
        if i % 97 == 3:
            out.extend(odd)
    data = b"\n".join(out) + b"\n"
    if plain:
        path = tmp / "audit.log"
        path.write_bytes(data)
        return path
    path = tmp / "audit.log.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(data)
    return path


def _writer_reads_first(monkeypatch: pytest.MonkeyPatch, chunks: int) -> None:
    """The workers "start" after the writer read ``chunks`` chunks itself (not at the mercy of timing)."""
    calls = iter(range(1 << 30))
    monkeypatch.setattr(workers.WorkerPool, "_starting", lambda self: next(calls) < chunks)
    real = workers._read_on

    def read_on(*args: Any) -> Any:
        READ_HERE.append(args[2])
        return real(*args)

    READ_HERE.clear()
    monkeypatch.setattr(workers, "_read_on", read_on)


READ_HERE: list[int] = []  # first line numbers of what the writer read itself


def _ingest(path: Path, data: Path, key_from: Path, n: int) -> dict[str, Any]:
    data.mkdir()
    shutil.copy(key_from, data / KEY_FILE)  # digests depend on the key: the same one for both runs
    result = CliRunner().invoke(cli, ["ingest", str(path), "--data", str(data), "--no-progress", "--json",
                                      "--workers", str(n)])
    assert result.exit_code == 1, result.output  # some input is rejected
    summary = orjson.loads(next(ln for ln in result.output.splitlines() if ln.startswith("{")))
    with open_store(str(data), readonly=True) as s:
        rows = list(sql(s, f"SELECT {ENTRY_SELECT} FROM entries ORDER BY leaf_index"))
        alerts = sorted(tuple(r) for r in sql(s, "SELECT rule, subject, priority, output, time, last_seen, occurrences, "
                                                 "occurrence, fields_json FROM alerts"))
        events = sorted(tuple(r) for r in sql(s, "SELECT a.rule, a.subject, e.key, e.occurrence, e.leaf_index "
                                                 "FROM alert_events e JOIN alerts a ON a.id = e.alert_id"))
        creds = list(sql(s, "SELECT id, kind, credential_id, subject, doc FROM credentials ORDER BY id"))
        uses = list(sql(s, "SELECT u.credential, u.request, e.key, u.link FROM credential_uses u "
                               "JOIN entries e ON e.leaf_index = u.leaf_index ORDER BY 1, 2"))
        flags = list(sql(s, "SELECT credential, flag, key FROM credential_flags ORDER BY 1, 2"))
        roots = [bytes(r[0]) for r in sql(s, "SELECT hash FROM trail_nodes ORDER BY level DESC, idx DESC LIMIT 1")]
    rejects = [(d["position"], d["reason"]) for d in map(orjson.loads, (data / "rejects.jsonl").read_bytes().splitlines())]
    return {"summary": {k: summary[k] for k in ("read", "stored", "duplicates", "rejected")},
            "entries": [(r[0], row_entry(r), bytes(r[2])) for r in rows], "alerts": alerts, "events": events, "creds": creds,
            "uses": uses, "flags": flags, "rejects": rejects, "roots": roots}


@pytest.mark.slow
@pytest.mark.parametrize(("cpus", "plain", "local", "method"),
                         [(2, False, 0, "fork"), (4, False, 0, "fork"), (2, True, 0, "fork"), (2, True, 5, "fork"),
                          (2, False, 5, "fork"), (2, True, 0, "forkserver")],
                         ids=["rules-in-workers", "consumers-apart", "byte-ranges", "ranges-writer-first",
                              "chunks-writer-first", "forkserver"])
def test_workers_store_what_one_process_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpus: int,
                                               plain: bool, local: int, method: str) -> None:
    """On 2 CPUs the consumers stay in the writer and the workers run the rules; with more, the
    consumers run in a process of their own (``pipeline.open_pipeline``): both give the same, and so
    do workers reading byte ranges of a plain file, a writer that reads the first ``local`` chunks
    itself while the workers start (``WorkerPool._starting``), and workers started by a forkserver
    (with their own ruleset, their results through the pipe) rather than forked from the writer (with
    its compiled one, chunks and results through shared-memory slots)."""
    monkeypatch.setattr(workers, "CHUNK_BYTES", 64 * 1024)  # many chunks, cut at many places
    monkeypatch.setattr(pipeline, "cpus", lambda: cpus)
    monkeypatch.setattr(workers, "_may_fork", lambda: method == "fork")
    methods: list[str] = []
    slotted: list[bool] = []
    real_init = workers.WorkerPool.__init__

    def init(self: workers.WorkerPool, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        methods.append(self.method)
        slotted.append(self._slots is not None)

    monkeypatch.setattr(workers.WorkerPool, "__init__", init)
    _writer_reads_first(monkeypatch, local)
    path = _input(tmp_path, plain)
    key = tmp_path / "redaction.key"
    load_or_create(str(key))
    one = _ingest(path, tmp_path / "one", key, 0)
    two = _ingest(path, tmp_path / "two", key, 2)
    assert methods == [method]
    assert slotted == [method == "fork"]  # forked workers share the writer's slots (chunk_slots); others use the pipe
    assert len(READ_HERE) >= local and (len(READ_HERE) <= 1 if not local else True)
    assert one["summary"]["rejected"] > 20 and one["summary"]["duplicates"] > 10 and len(one["alerts"]) > 5
    assert len(one["creds"]) > 5 and one["uses"] and one["flags"]
    for part in one:
        assert one[part] == two[part], part


def test_workers_take_odd_inputs_as_one_process_does(tmp_path: Path) -> None:
    """A file name that is not UTF-8 (positions cross to the workers without it), and a gzip of 64 MiB
    of newlines (one chunk, no Python loop per line), with workers."""
    import os
    import time

    name = os.fsdecode(bytes(tmp_path) + b"/bad\xff\xfe.log")
    with open(name, "wb") as fh:
        fh.write(b"\n" * 3 + orjson.dumps(make_event("nu-1")) + b"\n{truncated\n")
    gz = tmp_path / "nl.log.gz"
    gz.write_bytes(gzip.compress(b"\n" * (64 << 20) + orjson.dumps(make_event("last")) + b"\n", 9))
    t = time.perf_counter()
    r = CliRunner().invoke(cli, ["ingest", name, str(gz), "--no-detect", "--json", "--workers", "2",
                                 "--data", str(tmp_path / "d")])
    assert time.perf_counter() - t < 20 and r.exit_code == 1 and "Traceback" not in r.output, r.output
    rejects = (tmp_path / "d" / "rejects.jsonl").read_text()
    assert "bad\\\\xff\\\\xfe.log:5" in rejects and rejects.count("\n") == 1
    r = CliRunner().invoke(cli, ["query", "--json", "--data", str(tmp_path / "d")])
    assert [orjson.loads(line)["auditID"] for line in r.stdout.splitlines()] == ["nu-1", "last"]


@pytest.mark.slow
def test_bodies_compressed_by_the_workers_are_the_store_s_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the dictionary's training (2,000 bodies) the workers compress the bodies: the stored frames
    are byte for byte those of one process, and every body reads back."""
    from kubetrail.store.codec import FRAME, TRAIN_AFTER
    from kubetrail.store.sqlite import SqliteStore

    monkeypatch.setattr(workers, "CHUNK_BYTES", 64 * 1024)  # chunks handed out after the training, too
    _writer_reads_first(monkeypatch, 0)
    taken: list[int] = []
    real = SqliteStore._rows

    def spy(self: SqliteStore, records: list) -> list:  # the frames the store's rows take (``codec.batch``)
        if self.codec.dictionary is not None:
            current = self.codec.dictionary[0]
            taken.append(sum(1 for r in records if (f := r.__dict__.get(FRAME)) is not None and f[0] == current))
        return real(self, records)

    monkeypatch.setattr(SqliteStore, "_rows", spy)

    path = tmp_path / "a.log"
    path.write_bytes(b"".join(orjson.dumps(make_event(f"b-{i}", name=f"n-{i}", user=f"u-{i % 17}")) + b"\n"
                             for i in range(TRAIN_AFTER * 2)))
    key = tmp_path / "redaction.key"
    load_or_create(str(key))
    bodies = []
    for n in (0, 2):
        data = tmp_path / f"d{n}"
        data.mkdir()
        shutil.copy(key, data / KEY_FILE)
        r = CliRunner().invoke(cli, ["ingest", str(path), "--data", str(data), "--no-progress", "--no-detect",
                                     "--workers", str(n)])
        assert r.exit_code == 0, r.output
        with open_store(str(data), readonly=True) as s:
            frames = [bytes(b) for (b,) in sql(s, "SELECT body FROM entries ORDER BY leaf_index")]
            assert [orjson.loads(s.decompress(f))["auditID"] for f in frames] == [f"b-{i}" for i in range(TRAIN_AFTER * 2)]
            assert s.body_dictionary() is not None
        bodies.append(frames)
        assert (sum(taken) > TRAIN_AFTER // 2) == (n > 0)  # the writer took the workers' frames
    assert bodies[0] == bodies[1]
