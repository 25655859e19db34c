"""`kubetrail buffer status`: the example in docs/transport.md runs, and the numbers are the WAL's."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import orjson
from click.testing import CliRunner

from kubetrail.buffer import Wal
from kubetrail.cli import cli
from kubetrail.stages.seal import Seal
from kubetrail.testing import make_records

DOC = Path(__file__).resolve().parents[3] / "docs" / "transport.md"
SRC = "n/audit-file:/a.log"


def documented_example() -> tuple[list[str], dict]:
    block = re.search(r"```console\n\$ (kubetrail buffer status[^\n]*)\n(\{[^\n]*\})\n```", DOC.read_text())
    assert block, "docs/transport.md lost its `buffer status` example"
    return shlex.split(block.group(1)), orjson.loads(block.group(2))


def test_the_documented_example_runs_and_reports_the_wal(tmp_path: Path) -> None:
    argv, shown = documented_example()
    wal_dir = tmp_path / "buffer"
    wal = Wal(str(wal_dir), 1 << 20)
    recs = make_records(7, source=SRC)
    seal = Seal()
    seal.commit(SRC, seal.seal(SRC, recs))
    wal.append(SRC, recs, {SRC: "7"})
    wal.close()
    argv[argv.index("--dir") + 1] = str(wal_dir)
    result = CliRunner().invoke(cli, argv[1:])
    assert result.exit_code == 0, result.output
    got = orjson.loads(result.stdout)
    assert set(got) == set(shown)
    assert got["records"] == 7 and got["segments"] == 1 and got["quarantined_segments"] == 0
    assert got["bytes"] == sum(p.stat().st_size for p in wal_dir.glob("wal-*.seg"))
    assert got["oldest_record_age_secs"] >= 0


def test_text_output_and_a_missing_wal(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["buffer", "status", "--data", str(tmp_path)])
    assert result.exit_code != 0 and "no WAL in" in result.output
    Wal(str(tmp_path / "buffer"), 1 << 20).close()
    result = CliRunner().invoke(cli, ["buffer", "status", "--data", str(tmp_path)])
    assert result.exit_code == 0 and "0 record(s) not yet acknowledged (none waiting)" in result.stdout
