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


def _ingest(tmp_path: Path, lines: list[bytes], name: str = "audit.log") -> tuple[dict, str]:
    log = tmp_path / name
    log.write_bytes(b"".join(line + b"\n" for line in lines))
    data = str(tmp_path / "d")
    r = CliRunner().invoke(cli, ["ingest", str(log), "--no-detect", "--json", "--data", data])
    assert "Traceback" not in r.output and r.exit_code in (0, 1), r.output
    return orjson.loads(r.stdout.strip().splitlines()[-1]), data


def _verified(data: str) -> None:
    r = CliRunner().invoke(cli, ["verify", "--deep", "--json", "--data", data])
    doc = orjson.loads(r.stdout.strip().splitlines()[-1])
    assert r.exit_code == 0 and doc["ok"] is True, r.output


@pytest.mark.parametrize("change", [
    {"stageTimestamp": "2300-01-01T00:00:00Z"},
    {"stageTimestamp": "1600-01-01T00:00:00Z", "requestReceivedTimestamp": "1600-01-01T00:00:00Z"},
    {"stageTimestamp": "2024-01-01T00:00:00+99999999:00"},
    {"stageTimestamp": "2024-01-01T00:00:00+25:00"},
    {"responseStatus": {"code": 1 << 63}},
    {"responseStatus": {"code": (1 << 64) - 1}},
    {"responseStatus": {"code": str(1 << 64)}},
    {"responseStatus": {"code": True}},
], ids=["after-2262", "before-1677", "zone-absurd", "zone-25h", "code-2^63", "code-2^64-1", "code-digits",
        "code-true"])
def test_values_the_store_cannot_hold_are_indexed_lossily(tmp_path: Path, change: dict) -> None:
    """Item 1 and 2 of issue 10: these used to abort the batch (OverflowError) or leave a leaf that
    `verify` reported as modified forever (``true`` read back as 1)."""
    odd = {**make_event("odd", user="mallory"), **change}
    doc, data = _ingest(tmp_path, [orjson.dumps(make_event("before")), orjson.dumps(odd),
                                   orjson.dumps(make_event("after"))])
    assert (doc["stored"], doc["rejected"]) == (3, 0)
    r = CliRunner().invoke(cli, ["query", "--user", "mallory", "--json", "--data", data])
    [row] = [orjson.loads(x) for x in r.stdout.splitlines()]
    r = CliRunner().invoke(cli, ["show", row["key"], "--json", "--data", data])
    assert "not indexed" in r.stdout
    _verified(data)


def test_gke_entry_with_labels_as_a_list(tmp_path: Path) -> None:
    gke = {"insertId": "g-1", "timestamp": "2024-05-01T10:00:00Z", "labels": ["not", "a", "map"],
           "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog", "serviceName": "k8s.io",
                            "methodName": "io.k8s.core.v1.pods.get",
                            "resourceName": "core/v1/namespaces/default/pods/p"}}
    doc, data = _ingest(tmp_path, [orjson.dumps(gke), orjson.dumps(make_event("after"))])
    assert (doc["stored"], doc["rejected"]) == (2, 0)
    _verified(data)


def test_a_yaml_looking_first_line_and_a_bom_cost_nothing_else(tmp_path: Path) -> None:
    """Item 3: detection is per line. ``Warning: …`` is one reject; the JSON lines after it are
    stored; a byte order mark in front of a line is ignored."""
    lines = [b"Warning: policy/v1beta1 PodSecurityPolicy is deprecated",
             b"\xef\xbb\xbf" + orjson.dumps(make_event("bom")),
             *(orjson.dumps(make_event(f"e{i}")) for i in range(3))]
    doc, data = _ingest(tmp_path, lines)
    assert (doc["stored"], doc["rejected"]) == (4, 1)
    [reject] = [orjson.loads(x) for x in (tmp_path / "d" / "rejects.jsonl").read_bytes().splitlines()]
    assert reject["position"].endswith("audit.log:1")


def test_a_gzip_of_newlines_costs_little(tmp_path: Path) -> None:
    """Item 4: 64 MiB of newlines (a 65 KB .gz) used to take a minute; blank runs are skipped in C."""
    import gzip
    import time

    path = tmp_path / "nl.log.gz"
    path.write_bytes(gzip.compress(b"\n" * (64 << 20) + orjson.dumps(make_event("last")) + b"\n", 9))
    assert path.stat().st_size < 100_000
    t = time.perf_counter()
    r = CliRunner().invoke(cli, ["ingest", str(path), "--no-detect", "--json", "--data", str(tmp_path / "d")])
    assert time.perf_counter() - t < 10 and r.exit_code == 0, r.output
    assert orjson.loads(r.stdout.strip().splitlines()[-1])["stored"] == 1
    r = CliRunner().invoke(cli, ["query", "--json", "--data", str(tmp_path / "d")])
    assert orjson.loads(r.stdout)["auditID"] == "last"


def test_an_event_deeper_than_the_parser_reads_is_stored_cut(tmp_path: Path) -> None:
    """Item 5: orjson refuses more than 1024 levels; the event is kept with the deep part cut."""
    line = orjson.dumps(make_event("deep", user="mallory", requestObject={"x": 1}))
    line = line.replace(b'{"x":1}', b'{"a":' * 3000 + b"1" + b"}" * 3000)
    doc, data = _ingest(tmp_path, [orjson.dumps(make_event("before")), line, orjson.dumps(make_event("after"))])
    assert (doc["stored"], doc["rejected"]) == (3, 0)
    r = CliRunner().invoke(cli, ["query", "--user", "mallory", "--json", "--data", data])
    key = orjson.loads(r.stdout)["key"]
    r = CliRunner().invoke(cli, ["show", key, "--json", "--data", data])
    assert "kubetrail: cut, nested too deep" in r.stdout and "nested deeper than 64 levels" in r.stdout
    _verified(data)


def test_a_yaml_document_that_cannot_be_read_costs_itself(tmp_path: Path) -> None:
    """An alias or a syntax error in one document of a gcloud YAML stream rejects that document;
    the documents around it are stored."""
    good = "---\nkind: Event\napiVersion: audit.k8s.io/v1\nauditID: {}\nverb: get\nstage: ResponseComplete\n"
    text = good.format("y-1") + "---\nauditID: &a y-2\nverb: *a\n" + good.format("y-3") + "---\nauditID: [\n" \
        + good.format("y-5")
    (tmp_path / "gcloud.yaml").write_text(text)
    r = CliRunner().invoke(cli, ["ingest", str(tmp_path / "gcloud.yaml"), "--no-detect", "--json",
                                 "--data", str(tmp_path / "d")])
    doc = orjson.loads(r.stdout.strip().splitlines()[-1])
    assert (doc["stored"], doc["rejected"]) == (3, 2), r.output
    positions = [orjson.loads(x)["position"] for x in (tmp_path / "d" / "rejects.jsonl").read_bytes().splitlines()]
    assert [p.rsplit(":", 1)[1] for p in positions] == ["8", "17"], positions
