"""Config errors name the exact key path; good configs load with defaults filled in."""

from __future__ import annotations

import pytest

from kubetrail.config import Config, load, parse
from kubetrail.errors import ConfigError
from kubetrail.sources.audit_file import AuditFileConfig
from kubetrail.sources.audit_webhook import AuditWebhookConfig


def test_defaults_and_tagged_sources(tmp_path) -> None:
    cert = tmp_path / "tls.crt"
    cert.write_text("x")
    c = parse({"cluster": "prod", "sources": [
        {"type": "audit_file", "path": str(tmp_path / "audit.log")},
        {"type": "audit_webhook", "tls_cert_file": str(cert), "tls_key_file": str(cert),
         "bearer_token_file": str(cert)}]})
    assert isinstance(c, Config) and c.cluster == "prod" and c.data_dir == "./kubetrail-data"
    assert isinstance(c.sources[0], AuditFileConfig) and c.sources[0].read_from == "beginning"
    assert isinstance(c.sources[1], AuditWebhookConfig)


@pytest.mark.parametrize("doc,where", [
    ({"sources": [{"type": "audit_file", "pathx": "/tmp/a"}]}, "sources[0].pathx"),
    ({"sources": [{"type": "audit_file"}, {"type": "audit_file", "poll_ms": "fast"}]}, "sources[1].poll_ms"),
    ({"sources": [{"type": "nope"}]}, "sources[0].type"),
    ({"sources": [{"type": "audit_file", "path": "/no/such/dir/audit.log"}]}, "sources[0].path"),
    ({"sources": [{"type": "audit_webhook"}]}, "sources[0].tls_cert_file"),
    ({"checkpoint_interval_secs": 0}, "checkpoint_interval_secs"),
    ({"detect": {"enabled": "yes"}}, "detect.enabled"),
    ({"unknown_top": 1}, "unknown_top"),
])
def test_errors_name_the_key(doc: dict, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(doc)
    assert err.value.where == where, str(err.value)


def test_missing_file_and_bad_yaml(tmp_path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(str(bad))
    top = tmp_path / "list.yaml"
    top.write_text("- a\n")
    with pytest.raises(ConfigError, match="mapping"):
        load(str(top))


def test_environment_references_are_expanded_at_load(tmp_path, monkeypatch) -> None:
    """One DaemonSet ConfigMap for every node: ``${NODE_NAME}`` comes from each pod's environment."""
    (tmp_path / "audit").mkdir()
    path = tmp_path / "c.yaml"
    path.write_text(f"cluster: ${{CLUSTER}}-eu\nsources:\n  - type: audit_file\n    path: {tmp_path}/audit/a.log\n"
                    "    node: ${NODE_NAME}\nwitness_dir: /w/$${NODE_NAME}\n")
    monkeypatch.setenv("NODE_NAME", "cp-1")
    monkeypatch.setenv("CLUSTER", "prod")
    config = load(str(path))
    assert config.cluster == "prod-eu" and config.sources[0].node == "cp-1"
    assert config.witness_dir == "/w/${NODE_NAME}"
    monkeypatch.delenv("NODE_NAME")
    with pytest.raises(ConfigError, match=r"sources\[0\]\.node: environment variable NODE_NAME is not set"):
        load(str(path))
