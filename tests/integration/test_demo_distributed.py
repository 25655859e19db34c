"""`kubetrail demo --distributed`: the scenario through nats-server, an agent and a collector finds
what the embedded demo finds, and a second run stores nothing twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from transport_util import verify_ok

from kubetrail.cli import cli
from kubetrail.store import open_store

pytestmark = pytest.mark.integration


def rules(data: Path) -> list[tuple[str, str]]:
    r = CliRunner().invoke(cli, ["alerts", "--json", "--data", str(data)])
    assert r.exit_code == 0, r.output
    import orjson

    return sorted((a["rule"], a["subject"]) for a in map(orjson.loads, r.stdout.splitlines()))


def size(data: Path) -> int:
    store = open_store(str(data), readonly=True)
    try:
        return store.size()
    finally:
        store.close()


def test_distributed_demo_finds_what_the_embedded_one_finds(tmp_path: Path, nats_server) -> None:
    dist, emb = tmp_path / "dist", tmp_path / "emb"
    r = CliRunner().invoke(cli, ["demo", "--distributed", "--data", str(dist)])
    assert r.exit_code == 0, r.output
    assert "through the broker: the agent sealed" in r.stdout and "(15/15 steps)" in r.stdout
    assert CliRunner().invoke(cli, ["demo", "--data", str(emb)]).exit_code == 0
    assert size(dist) == size(emb) > 2000
    assert rules(dist) == rules(emb)
    verify_ok(dist)
    again = CliRunner().invoke(cli, ["demo", "--distributed", "--data", str(dist)])
    assert again.exit_code == 0, again.output
    assert size(dist) == size(emb)
    verify_ok(dist)
