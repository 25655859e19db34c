"""A `stdout` alert sink never mixes into a command's JSON: while `ingest --json`, `detect -o json`
or `alerts deliver --json` run, what the sink writes goes to standard error."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.testing import make_event


def exec_events(tag: str) -> bytes:
    return b"".join(orjson.dumps(make_event(f"{tag}-{i}", user=f"eve-{tag}", verb="create", resource="pods",
                                            subresource="exec", namespace="prod", name="web", code=101,
                                            time=f"2024-05-01T10:00:0{i}Z")) + b"\n" for i in range(3))


def test_sink_output_goes_to_stderr_in_json_mode(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "detect.yaml").write_text("sinks:\n  - {name: out, type: stdout}\n")
    (tmp_path / "a.log").write_bytes(exec_events("a"))
    r = CliRunner().invoke(cli, ["ingest", str(tmp_path / "a.log"), "--json", "--data", str(data)])
    assert r.exit_code == 0, r.output
    assert [orjson.loads(line)["stored"] for line in r.stdout.splitlines()] == [3]  # one JSON object, nothing else
    assert "Exec or Attach Into Pod" in r.stderr or "exec" in r.stderr.lower()  # the sink still delivered
    r = CliRunner().invoke(cli, ["alerts", "deliver", "--json", "--data", str(data)])
    assert r.exit_code == 0 and orjson.loads(r.stdout)["pending"] == 0
    # detection over the store again: the listing is JSON lines only
    r = CliRunner().invoke(cli, ["detect", "-o", "json", "--data", str(data)])
    assert r.exit_code == 0 and all(line.startswith("{") for line in r.stdout.splitlines())
