"""A full disk is reported as a full disk (issue 10 item 10), never as "the store cannot be read"
and never as a traceback; nothing already stored is lost."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.store.sqlite import Store
from kubetrail.testing import make_event

# The file-size limit makes every write past it fail (EFBIG) like a full disk would.
LIMITED = r'''
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from kubetrail.cli import main
sys.argv = ["kubetrail", *sys.argv[2:]]
main()
'''


def test_writes_past_the_limit_are_a_disk_error_not_a_damaged_store(tmp_path: Path) -> None:
    data = tmp_path / "d"
    first = tmp_path / "first.log"
    first.write_bytes(orjson.dumps(make_event("first")) + b"\n")
    assert CliRunner().invoke(cli, ["ingest", str(first), "--no-detect", "--data", str(data)]).exit_code == 0
    many = tmp_path / "many.log"
    many.write_bytes(b"".join(orjson.dumps(make_event(f"e{i}", requestObject={"pad": f"{i}" * 400})) + b"\n"
                              for i in range(3000)))
    size = sum(p.stat().st_size for p in data.iterdir())
    r = subprocess.run([sys.executable, "-c", LIMITED, str(size + 64 * 1024), "ingest", str(many), "--no-detect",
                        "--data", str(data)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr  # FAILED (cli/exitcodes.py)
    assert "cannot be read" not in r.stderr and "disk may be full" in r.stderr, r.stderr
    store = Store.open(str(data), create=False, readonly=True)
    try:
        assert [r.meta.audit_id for r in store.records_by_index(0, 1)] == ["first"]
    finally:
        store.close()


def test_sqlite_full_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLITE_FULL (a real ENOSPC under SQLite) says so; a damaged file still says "cannot be read"."""
    log = tmp_path / "a.log"
    log.write_bytes(orjson.dumps(make_event("x")) + b"\n")

    def full(*_: object, **__: object) -> None:
        exc = sqlite3.OperationalError("database or disk is full")
        exc.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
        raise exc

    monkeypatch.setattr(Store, "append", full)
    r = CliRunner().invoke(cli, ["ingest", str(log), "--no-detect", "--data", str(tmp_path / "d")])
    assert r.exit_code == 3 and "the disk is full" in r.output and "cannot be read" not in r.output
