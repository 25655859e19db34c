"""`kubetrail demo` end to end: ingest, summary, idempotence, and no secret in the data directory."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.demo.scenario import generate
from kubetrail.store.queries import LogFilters, QueryFilters
from kubetrail.store.sqlite import Store

EVENTS = 2000
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    data = tmp_path_factory.mktemp("demo") / "data"
    result = CliRunner().invoke(cli, ["demo", "--data", str(data), "--events", str(EVENTS)])
    assert result.exit_code == 0, result.output
    return data, result.output


def test_summary(first_run: tuple[Path, str]) -> None:
    data, out = first_run
    n = len(generate(events=EVENTS).events)
    assert f"read {n}, stored {n}, duplicates 0, rejected 0" in out
    assert "Attack timeline, found by querying the store (15/15 steps)" in out
    assert "[ ]" not in out  # every step found
    for needle in ("CSR asking for O=system:masters", "evil-admin", "198.51.100.77", "Events deleted",
                   "Alerts raised:", "Credential inventory", "Tamper-evident trail:", "Next:",
                   "kubetrail query --data", "kubetrail creds list", "kubetrail verify", "kubetrail policy lint"):
        assert needle in out, needle
    assert (data / "demo" / "audit-policy.yaml").is_file()


def test_inventory_puts_the_masters_cert_and_the_stolen_token_on_top(first_run: tuple[Path, str]) -> None:
    """Issue 5: the system:masters certificate first, the token minted for ops-automation second."""
    data, _ = first_run
    r = CliRunner().invoke(cli, ["creds", "list", "--json", "--data", str(data)])
    top = [orjson.loads(line) for line in r.stdout.splitlines()[:2]]
    assert top[0]["kind"] == "cert" and "system:masters" in top[0]["groups"]
    assert top[1]["kind"] == "token" and top[1]["subject"].endswith(":ops-automation")
    assert top[1]["created_by"] == "evil-admin"


def test_second_run_stores_nothing_new(first_run: tuple[Path, str]) -> None:
    data, _ = first_run
    result = CliRunner().invoke(cli, ["demo", "--data", str(data), "--events", str(EVENTS)])
    assert result.exit_code == 0, result.output
    n = len(generate(events=EVENTS).events)
    assert f"stored 0, duplicates {n}" in result.output
    store = Store.open(str(data), create=False)
    try:  # the audit events plus the node agent part's container lines (their idempotence: test_nodes.py)
        logs = store.count_logs(LogFilters())
        assert logs > 0 and store.size() == n + logs
    finally:
        store.close()


def _secrets() -> set[bytes]:
    scenario = generate(events=EVENTS)
    out = set(JWT.findall(scenario.lines()))
    assert len(out) > 20
    for value in scenario.planted:
        out |= {value.encode(), base64.b64encode(value.encode())}
    return out


def test_no_secret_in_the_data_directory(first_run: tuple[Path, str]) -> None:
    data, out = first_run
    secrets = _secrets()
    blobs: list[tuple[str, bytes]] = [("stdout", out.encode())]
    for root, _dirs, files in os.walk(data):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                blobs.append((path, fh.read()))
    store = Store.open(str(data), create=False)
    try:
        blobs += [(f"body #{idx}", body or b"") for idx, _entry, _hash, body in store.iter_entries()]
        redacted = [r for r in store.query(QueryFilters(resource=["secrets", "serviceaccounts", "tokenreviews"]))
                    if r.redactions]
        assert len(redacted) > 10
    finally:
        store.close()
    leaks = [(where, s[:24]) for where, blob in blobs for s in secrets if s in blob]
    assert not leaks
    assert len(blobs) > EVENTS


def test_log_option_keeps_the_raw_log(tmp_path: Path) -> None:
    log = tmp_path / "raw" / "audit.log"
    log.parent.mkdir()
    result = CliRunner().invoke(cli, ["demo", "--data", str(tmp_path / "d"), "--events", "300", "--log", str(log)])
    assert result.exit_code == 0, result.output
    assert log.read_bytes() == generate(events=300).lines()
    assert f"--events {log}" in result.output  # the policy simulate hint uses it


def test_script_writes_the_same_log(tmp_path: Path) -> None:
    out = tmp_path / "audit.log"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "make_demo_log.py"), str(out), "--events", "300"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == generate(events=300).lines()
