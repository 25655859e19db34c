"""Output conventions: -o table|wide|json|yaml, --json as an alias, terminal-sized tables, NO_COLOR."""

from __future__ import annotations

import io
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.cli.output import ID_PREFIX, Column, Listing

GOLDEN = Path(__file__).parents[2] / "data" / "trail" / "data"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def data(tmp_path: Path) -> str:
    shutil.copytree(GOLDEN, tmp_path / "data")
    return str(tmp_path / "data")


def run(*args: str) -> str:
    r = CliRunner().invoke(cli, list(args), prog_name="kubetrail")
    assert r.exit_code == 0, r.output
    return r.stdout


def test_json_yaml_and_the_alias_carry_the_same_rows(data: str) -> None:
    as_json = [orjson.loads(line) for line in run("query", "--limit", "3", "--json", "--data", data).splitlines()]
    assert run("query", "--limit", "3", "-o", "json", "--data", data) == \
        run("query", "--limit", "3", "--json", "--data", data)
    as_yaml = list(yaml.safe_load_all(run("query", "--limit", "3", "-o", "yaml", "--data", data)))
    assert as_yaml == as_json and len(as_json) == 3
    row = as_json[0]
    assert row["time"] == "2024-05-01T10:00:00Z" and row["time_ns"] == 1714557600000000000
    assert len(row["key"]) == 64


def test_table_and_wide(data: str) -> None:
    table = run("query", "--limit", "2", "--data", data).splitlines()
    assert table[0].split() == ["TIME", "LEAF", "STAGE", "CODE", "VERB", "TARGET", "USER", "SOURCE", "IPS"]
    assert "Complete" in table[1] and "user-0" in table[1]
    wide = run("query", "--limit", "2", "-o", "wide", "--data", data)
    key = orjson.loads(run("query", "--limit", "1", "--json", "--data", data))["key"]
    assert key in wide and "KEY" in wide.splitlines()[0]


def test_conflicting_output_flags_are_a_usage_error(data: str) -> None:
    r = CliRunner().invoke(cli, ["query", "--json", "-o", "yaml", "--data", data])
    assert r.exit_code == 2 and "disagree" in r.stderr


def test_ids_are_a_prefix_in_table_and_whole_in_wide() -> None:
    cols = [Column("key", "key", id=True), Column("note", "note")]
    for output, expect in (("table", "a" * ID_PREFIX), ("wide", "a" * 64)):
        out = io.StringIO()
        with Listing(output, cols, out=out) as listing:
            listing.add({"key": "a" * 64, "note": "n\ttab"})
        assert out.getvalue().splitlines()[1].split()[0] == expect
        assert "n tab" in out.getvalue()


def test_tables_stream_in_chunks_with_one_header() -> None:
    out = io.StringIO()
    with Listing("table", [Column("n", "n", right=True)], out=out) as listing:
        for n in range(1234):
            listing.add({"n": n})
    lines = out.getvalue().splitlines()
    assert lines[0].strip() == "N" and len(lines) == 1235 and lines[-1].strip() == "1233"


def on_a_terminal(args: list[str], columns: int, env: dict[str, str]) -> str:
    """Run kubetrail with stdout on a pseudo-terminal `columns` wide; what it printed there."""
    master, slave = pty.openpty()
    full_env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", **env}
    if "NO_COLOR" not in env:
        full_env.pop("NO_COLOR", None)
    p = subprocess.Popen([sys.executable, "-m", "kubetrail", *args], stdout=slave, stderr=subprocess.PIPE,
                         env=full_env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert p.wait(timeout=60) == 0, p.stderr.read() if p.stderr else ""
    if p.stderr:
        p.stderr.close()
    return b"".join(chunks).decode()


def test_on_a_terminal_tables_fit_and_colour_follows_no_color(data: str) -> None:
    args = ["query", "--limit", "5", "--data", data]
    coloured = on_a_terminal(args, 88, {})
    assert ANSI.search(coloured), "a terminal gets a bold header"
    lines = [ANSI.sub("", line) for line in coloured.replace("\r", "").splitlines() if line.strip()]
    assert len(lines) == 6 and all(len(line) <= 88 for line in lines), lines
    assert "…" in coloured, "the target column is cut to fit"
    plain = on_a_terminal(args, 88, {"NO_COLOR": "1"})
    assert not ANSI.search(plain)
