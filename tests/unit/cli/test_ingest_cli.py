"""`ingest`, `query`, `show`, `stats` from the outside: exit codes, output shapes, clear errors."""

from __future__ import annotations

import orjson
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.testing import make_event

FIELDS = ["key", "time", "auditID", "stage", "verb", "user", "groups", "resource", "subresource", "namespace",
          "name", "code", "sourceIPs", "userAgent", "requestURI", "source", "leaf_index"]


def write_log(path, n: int = 5, bad: int = 0) -> None:
    lines = [orjson.dumps(make_event(f"e-{i}", user="alice" if i % 2 else "bob")) for i in range(n)]
    lines += [b"{not json"] * bad
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_ingest_query_show_stats(tmp_path) -> None:
    log = tmp_path / "a.log"
    write_log(log, 5, bad=1)
    data = str(tmp_path / "d")
    r = CliRunner().invoke(cli, ["ingest", str(log), "--data", data, "--json", "--no-detect"])
    assert r.exit_code == 1, r.output  # one line rejected
    summary = orjson.loads(r.stdout.strip().splitlines()[-1])
    assert (summary["read"], summary["stored"], summary["rejected"]) == (6, 5, 1)
    r = CliRunner().invoke(cli, ["ingest", str(log), "--data", data, "--no-detect"])
    assert "stored 0, duplicates 5, rejected 1" in r.stdout
    r = CliRunner().invoke(cli, ["query", "--json", "--user", "alice", "--data", data])
    rows = [orjson.loads(x) for x in r.stdout.splitlines()]
    assert len(rows) == 2 and all(f in rows[0] for f in FIELDS)
    r = CliRunner().invoke(cli, ["query", "--count", "--data", data])
    assert r.stdout.strip() == "5"
    r = CliRunner().invoke(cli, ["show", rows[0]["key"], "--json", "--data", data])
    shown = orjson.loads(r.stdout)
    assert shown["event"]["auditID"] == rows[0]["auditID"]
    r = CliRunner().invoke(cli, ["stats", "--json", "--data", data])
    assert orjson.loads(r.stdout)["entries"] == 5


def test_clear_errors_without_tracebacks(tmp_path) -> None:
    r = CliRunner().invoke(cli, ["ingest", str(tmp_path / "missing.log"), "--data", str(tmp_path / "d")])
    assert r.exit_code == 2 and "no such file" in r.stderr
    r = CliRunner().invoke(cli, ["query", "--data", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "no kubetrail store" in r.stderr
    r = CliRunner().invoke(cli, ["query", "--since", "yesterday-ish", "--data", str(tmp_path / "empty")])
    assert r.exit_code == 2
    r = CliRunner().invoke(cli, ["show", "nope", "--data", str(tmp_path / "d")])
    assert r.exit_code in (1, 2)
