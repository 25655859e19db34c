"""One exit-status table for the whole CLI: the code, docs/cli.md and real runs agree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kubetrail import errors
from kubetrail.cli import cli, exitcodes

ROOT = Path(__file__).parents[3]
GOLDEN = ROOT / "tests" / "data" / "trail" / "data"


def test_docs_print_the_same_table() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (\w+) \| (.+) \|$", text, re.M)
    assert [(int(c), n) for c, n, _ in rows] == [(c, n) for c, n, _ in exitcodes.TABLE]
    for (_, _, doc), (_, _, meaning) in zip(rows, exitcodes.TABLE, strict=True):
        assert doc.replace("\\|", "|") == meaning


@pytest.mark.parametrize(("exc", "code"), [
    (errors.InputError("x"), exitcodes.USAGE),
    (errors.ConfigError("a", "b"), exitcodes.USAGE),
    (errors.NotFoundError("x"), exitcodes.USAGE),
    (errors.StoreNotFoundError("x"), exitcodes.USAGE),
    (errors.StoreError("x"), exitcodes.FAILED),
    (errors.StoreVersionError("x"), exitcodes.FAILED),
    (errors.UnavailableError("x"), exitcodes.FAILED),
    (errors.SourceError("x"), exitcodes.FAILED),
    (errors.TrailError("x"), exitcodes.USAGE),
])
def test_each_error_has_one_status(exc: BaseException, code: int) -> None:
    assert exitcodes.code_for(exc) == code


@pytest.fixture
def data(tmp_path: Path) -> str:
    shutil.copytree(GOLDEN, tmp_path / "data")
    return str(tmp_path / "data")


def status(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args), prog_name="kubetrail")
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output
    return r.exit_code, r.stderr


def test_real_commands_exit_with_the_table(data: str, tmp_path: Path) -> None:
    assert status("stats", "--data", data)[0] == exitcodes.OK
    bad = tmp_path / "bad.log"
    bad.write_text("this is not an audit event\n")
    assert status("ingest", str(bad), "--data", str(tmp_path / "fresh"))[0] == exitcodes.FINDINGS
    for args in (["show", "0" * 64], ["query", "--limit", "0"], ["query", "--bogus"], ["nosuchcommand"]):
        code, err = status(*args, "--data", data)
        assert code == exitcodes.USAGE, args
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), (args, err)
    assert status("stats", "--data", str(tmp_path / "nothing-here"))[0] == exitcodes.USAGE
    (Path(data) / "kubetrail.db").write_bytes(os.urandom(8192))
    code, err = status("query", "--data", data)
    assert code == exitcodes.FAILED and err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_a_closed_pipe_is_141_without_a_traceback(data: str) -> None:
    kubetrail = [sys.executable, "-m", "kubetrail"]
    p = subprocess.Popen([*kubetrail, "query", "-o", "json", "--data", data], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    p.stderr.close()
    assert p.wait(timeout=60) == exitcodes.PIPE_CLOSED and "Traceback" not in err, err
