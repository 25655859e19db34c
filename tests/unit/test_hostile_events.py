"""An event built to break serialisation (nesting past orjson's limit, integers beyond 64 bits,
YAML binary values) is stored with what could be kept and a note; it never aborts the batch,
blocks a live source or loses the events around it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import Decoded, SourceRef
from kubetrail.stages import extract
from kubetrail.store.queries import QueryFilters
from kubetrail.testing import make_event


def deep(levels: int) -> dict:
    node: dict = {"leaf": "x"}
    for _ in range(levels):
        node = {"a": node}
    return node


def write_lines(path: Path, events: list[dict | bytes]) -> None:
    path.write_bytes(b"".join((e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n" for e in events))


def test_deep_event_is_stored_cut_and_the_rest_goes_on(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    poison = orjson.dumps(make_event("poison", verb="patch", resource="widgets", user="mallory",
                                     requestObject=deep(10)))
    # orjson can read 1024 levels but writes at most 255: nest the body in the raw line
    poison = poison.replace(b'{"leaf":"x"}', b'{"a":' * 290 + b'{"leaf":"x"}' + b"}" * 290)
    write_lines(tmp_path / "audit.log", [make_event(f"ok-{i}") for i in range(5)] + [poison]
                + [make_event(f"ok-{i}") for i in range(5, 10)])
    r = CliRunner().invoke(cli, ["ingest", str(log), "--no-detect", "--json", "--data", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    doc = orjson.loads(r.stdout.strip().splitlines()[-1])
    assert doc["stored"] == 11 and doc["rejected"] == 0
    r = CliRunner().invoke(cli, ["query", "--user", "mallory", "--json", "--data", str(tmp_path / "d")])
    [row] = [orjson.loads(x) for x in r.stdout.splitlines()]
    assert row["auditID"] == "poison" and row["verb"] == "patch"
    r = CliRunner().invoke(cli, ["show", row["key"], "--json", "--data", str(tmp_path / "d")])
    assert "kubetrail: cut, nested too deep" in r.stdout and "nested deeper than 64 levels" in r.stdout


def test_integers_beyond_64_bits_and_binary_values(tmp_path: Path) -> None:
    big = make_event("big", annotations={"n": "1"})
    line = orjson.dumps(big).replace(b'"n":"1"', b'"n":123456789012345678901234567890')
    write_lines(tmp_path / "a.log", [line])
    yaml_file = tmp_path / "b.yaml"
    yaml_file.write_text("kind: Event\napiVersion: audit.k8s.io/v1\nauditID: bin\nverb: get\nstage: ResponseComplete\n"
                         "requestURI: /x\nannotations: {blob: !!binary aGVsbG8=}\n")
    r = CliRunner().invoke(cli, ["ingest", str(tmp_path / "a.log"), str(yaml_file), "--no-detect", "--json",
                                 "--data", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    assert orjson.loads(r.stdout.strip().splitlines()[-1])["stored"] == 2


def test_an_unexpected_failure_rejects_one_event_not_the_batch(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = extract.extract_meta

    def explode_on_one(event, lossy=None):
        if event.get("auditID") == "boom":
            raise KeyError("boom")
        return real(event, lossy)

    monkeypatch.setattr(extract, "extract_meta", explode_on_one)
    pipe = open_pipeline(Options(data_dir=str(tmp_path / "d"), detect=False))
    try:
        decoded = [Decoded(make_event(a), "event", f"p:{i}") for i, a in enumerate(["a", "boom", "c"])]
        stored = pipe.commit_decoded(decoded, [], SourceRef(stream="test"), {"src": "pos-1"})
        assert [r.meta.audit_id for r in stored] == ["a", "c"]
        assert pipe.summary.rejected == 1 and pipe.store.position("src") == "pos-1"
        assert [r.meta.audit_id for r in pipe.store.query(QueryFilters())] == ["a", "c"]
    finally:
        pipe.close()
        pipe.store.close()
    rejects = (tmp_path / "d" / "rejects.jsonl").read_text()
    assert "p:1" in rejects and "KeyError" in rejects and "boom" not in rejects.replace("p:1", "")


def test_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    """A file name Python can only hold with surrogates is stored, hashed and printed escaped."""
    import os

    name = os.fsdecode(bytes(tmp_path) + b"/bad\xff\xfe.log")
    with open(name, "wb") as fh:
        fh.write(orjson.dumps(make_event("nu-1")) + b"\n{truncated\n")
    r = CliRunner().invoke(cli, ["ingest", str(tmp_path), "--no-detect", "--json", "--data", str(tmp_path / "d")])
    assert r.exit_code == 1 and "Traceback" not in r.output  # 1: one line rejected
    r = CliRunner().invoke(cli, ["query", "--json", "--data", str(tmp_path / "d")])
    assert orjson.loads(r.stdout)["source"].endswith("bad\\xff\\xfe.log")
    assert "bad\\\\xff\\\\xfe.log:2" in (tmp_path / "d" / "rejects.jsonl").read_text()
    r = CliRunner().invoke(cli, ["verify", "--json", "--data", str(tmp_path / "d")])
    assert orjson.loads(r.stdout.strip().splitlines()[-1])["ok"] is True


@pytest.mark.parametrize("args", [["alerts", "--since", "99999999999d"], ["creds", "list", "--at", "99999999999d"],
                                  ["query", "--since", "99999999999d"]])
def test_durations_beyond_64_bit_time_are_a_clear_error(tmp_path: Path, args: list[str]) -> None:
    CliRunner().invoke(cli, ["ingest", "--no-detect", "--data", str(tmp_path / "d"), "-"],
                       input=orjson.dumps(make_event("one")).decode() + "\n")
    r = CliRunner().invoke(cli, [*args, "--data", str(tmp_path / "d")])
    assert r.exit_code == 2 and "out of range" in r.output and "Traceback" not in r.output
