"""`kubetrail logs` over log lines stored through the pipeline (with an audit event beside them),
`show` of a log line, `stats`, and `verify --deep` on the indexed copies of log metadata."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import LogMeta, Record, Redaction, SourceRef
from kubetrail.sources._logkey import log_key
from kubetrail.testing import make_event

T0 = 1_714_557_600_000_000_000


def line(i: int, text: str, **meta: str) -> Record:
    body = text.encode()
    kind = "node" if meta.get("unit") else "container"
    return Record(kind=kind, key=log_key(kind, "cri:x", i, "stdout", T0 + i, body), time=T0 + i * 1_000_000_000,
                  source=SourceRef(node=meta.get("node", ""), stream="cri-logs:x"), body=body, format="cri",
                  meta=LogMeta(stream="stdout" if kind == "container" else "", **meta),
                  redactions=[Redaction("message", "abcdef123456", "secret-pair")] if "[redacted]" in text else [])


def build(d: str, location: str | None) -> list[str]:
    """An audit event and four log lines stored through the pipeline; the CLI flags that reach them."""
    args = ["--data", d, *(["--store", location] if location else [])]
    log = Path(d).parent / "audit.log"
    log.write_bytes(orjson.dumps(make_event("a-1", verb="create", namespace="shop", time="2024-05-01T10:00:00Z"))
                    + b"\n")
    assert CliRunner().invoke(cli, ["ingest", str(log), "--no-detect", *args]).exit_code == 0
    pipe = open_pipeline(Options(data_dir=d, store=location, detect=True))
    web = {"namespace": "shop", "workload": "deployment/shop/web", "container": "web"}
    pipe.commit_records([
        line(3, "GET /cart 200", node="node-b", pod="web-2", pod_uid="u2", **web),
        line(1, "started", node="node-a", pod="web-1", pod_uid="u1", **web),
        line(2, "connect password=[redacted]", node="node-a", pod="db-0", pod_uid="u3", namespace="shop",
             workload="statefulset/shop/db", container="postgres"),
        line(4, "Accepted publickey for root", node="node-a", unit="sshd"),
    ])
    pipe.close()
    pipe.store.close()
    return args


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def data(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """On both engines: the CLI flags (``--data`` and, for PostgreSQL, ``--store``)."""
    url = request.getfixturevalue("postgres_server").url() if request.param == "postgres" else None
    return build(str(tmp_path_factory.mktemp("logs") / "d"), url)


def rows(data: list[str], *args: str) -> list[dict[str, object]]:
    r = CliRunner().invoke(cli, ["logs", "--json", *data, *args])
    assert r.exit_code == 0, r.output
    return [orjson.loads(x) for x in r.output.splitlines()]


def test_workload_follows_pods_across_nodes_in_time_order(data: list[str]) -> None:
    """--workload returns every pod's lines on every node, oldest first; --order newest reverses."""
    got = rows(data, "--workload", "deployment/shop/web")
    assert [(r["pod"], r["node"], r["message"]) for r in got] == [("web-1", "node-a", "started"),
                                                                  ("web-2", "node-b", "GET /cart 200")]
    assert [r["pod"] for r in rows(data, "--workload", "deployment/shop/web", "--order", "newest")] == \
        ["web-2", "web-1"]


def test_filters_and_fields(data: list[str]) -> None:
    """Each filter narrows; every contract field is present; audit events never show up."""
    assert len(rows(data)) == 4
    assert [r["unit"] for r in rows(data, "--unit", "sshd")] == ["sshd"]
    assert [r["pod"] for r in rows(data, "--node", "node-a", "--kind", "container")] == ["web-1", "db-0"]
    assert [r["message"] for r in rows(data, "--grep", "pass(word)?=")] == ["connect password=[redacted]"]
    assert rows(data, "--container", "postgres", "--namespace", "shop")[0]["workload"] == "statefulset/shop/db"
    assert len(rows(data, "--since", "2024-05-01T10:00:03Z")) == 2
    r = rows(data, "--limit", "1")[0]
    for field in ("key", "time", "time_ns", "kind", "node", "namespace", "pod", "pod_uid", "container", "stream",
                  "message", "workload", "unit", "source"):
        assert field in r
    count = CliRunner().invoke(cli, ["logs", "--count", *data, "--pod", "web-1"])
    assert count.output.strip() == "1"


def test_show_stats_and_query_keep_kinds_apart(data: list[str]) -> None:
    """show prints a log line's row; stats names the kinds and workloads; query lists audit events only."""
    key = rows(data, "--pod", "db-0")[0]["key"]
    shown = orjson.loads(CliRunner().invoke(cli, ["show", str(key), "--json", *data]).output)
    assert shown["workload"] == "statefulset/shop/db" and shown["redactions"][0]["what"] == "secret-pair"
    stats = CliRunner().invoke(cli, ["stats", *data]).output
    assert "container (3)" in stats and "deployment/shop/web (2)" in stats
    q = CliRunner().invoke(cli, ["query", "--json", *data, "--namespace", "shop"]).output.splitlines()
    assert len(q) == 1 and orjson.loads(q[0])["auditID"] == "a-1"


def test_verify_covers_log_lines_and_finds_an_edited_copy(data: list[str], tmp_path: Path,
                                                          request: pytest.FixtureRequest) -> None:
    """verify is green over log lines; editing an indexed copy hides a line from --workload, never shows a
    wrong one, and verify --deep names it."""
    assert CliRunner().invoke(cli, ["verify", *data]).exit_code == 0
    if "--store" in data:  # a store of its own to edit
        from kubetrail.store import open_store
        from kubetrail.store.testing import execute

        url = request.getfixturevalue("postgres_server").url()
        copy = build(str(tmp_path / "d"), url)
        with open_store(url, data_dir=str(tmp_path / "d")) as store:
            execute(store, "UPDATE entries SET workload = 'deployment/shop/other' WHERE name = 'web-1'")
    else:
        import shutil

        shutil.copytree(data[1], str(tmp_path / "d"))
        copy = ["--data", str(tmp_path / "d")]
        with sqlite3.connect(f"{copy[1]}/kubetrail.db") as conn:
            conn.execute("UPDATE entries SET workload = 'deployment/shop/other' WHERE name = 'web-1'")
    assert [r["pod"] for r in rows(copy, "--workload", "deployment/shop/web")] == ["web-2"]
    assert rows(copy, "--workload", "deployment/shop/other") == []
    deep = CliRunner().invoke(cli, ["verify", "--deep", *copy])
    assert deep.exit_code == 1 and "indexed copies" in deep.output
