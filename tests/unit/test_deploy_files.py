"""The deployment examples stay true to the code: the node config loads with kubetrail's own
validation (with its paths moved under a temporary root), and the systemd unit runs a command and
flags that exist."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.config import AuditFileConfig, parse

DEPLOY = Path(__file__).parents[2] / "deploy" / "node"


def test_node_config_loads(tmp_path: Path) -> None:
    text = (DEPLOY / "kubetrail.yaml").read_text()
    (tmp_path / "var/log/kubernetes/audit").mkdir(parents=True)
    data = yaml.safe_load(text.replace("/var/", f"{tmp_path}/var/"))
    config = parse(data, "deploy/node/kubetrail.yaml")
    [source] = config.sources
    assert isinstance(source, AuditFileConfig) and source.path.endswith("/var/log/kubernetes/audit/audit.log")
    assert config.witness_dir and config.detect.enabled


def test_systemd_unit_runs_an_existing_command() -> None:
    unit = (DEPLOY / "kubetrail.service").read_text()
    [exec_start] = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(exec_start)
    assert argv[0].endswith("/kubetrail") and argv[1] == "run"
    help_text = CliRunner().invoke(cli, ["run", "--help"]).output
    for flag in (a for a in argv[2:] if a.startswith("--")):
        assert flag in help_text, flag
    assert "/etc/kubetrail/kubetrail.yaml" in argv
