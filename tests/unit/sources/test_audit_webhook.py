"""audit_webhook without sockets: config, tokens, body handling and the kubeconfig document."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import orjson
import pytest
import yaml

from kubetrail.cli.webhook import kubeconfig
from kubetrail.errors import ConfigError, SourceError
from kubetrail.record import Decoded, Rejected, SourceRef
from kubetrail.sources.audit_webhook import (
    AuditWebhookConfig,
    BearerTokens,
    WebhookBatches,
    parse_listen_address,
)
from kubetrail.testing import make_event


def test_config_decodes_from_its_tag() -> None:
    cfg = msgspec.convert({"type": "audit_webhook", "listen_address": "0.0.0.0:9443",
                           "tls_cert_file": "c", "tls_key_file": "k", "bearer_token_file": "t"},
                          AuditWebhookConfig)
    assert cfg.listen_address == "0.0.0.0:9443" and cfg.max_body_bytes == 16 * 1024 * 1024
    assert cfg.problems() == []
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"type": "audit_webhook", "listen": "x"}, AuditWebhookConfig)


def test_config_problems_name_the_field() -> None:
    fields = [f for f, _ in AuditWebhookConfig(listen_address="nope", max_body_bytes=0).problems()]
    assert fields == ["tls_cert_file", "client_ca_file", "max_body_bytes", "listen_address"]


@pytest.mark.parametrize("value,expected", [("127.0.0.1:8443", ("127.0.0.1", 8443)),
                                            (":8443", ("0.0.0.0", 8443)), ("[::1]:0", ("::1", 0))])
def test_parse_listen_address(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(value) == expected


@pytest.mark.parametrize("value", ["8443", "host:", "host:http", "h:70000"])
def test_parse_listen_address_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        parse_listen_address(value)


def test_tokens_names_comments_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# comment\n\nalpha,apiserver-a,uid,\"g1,g2\"\nbeta\n")
    tokens = BearerTokens(str(path))
    assert tokens.match("alpha") == "apiserver-a"
    assert tokens.match("beta") == "token4"
    assert tokens.match("alph") is None and tokens.match("") is None
    path.write_text("gamma,new\n")
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    assert tokens.match("alpha") is None and tokens.match("gamma") == "new"


def test_tokens_file_must_hold_a_token(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(SourceError, match="no bearer tokens"):
        BearerTokens(str(tmp_path / "empty"))
    with pytest.raises(SourceError, match="cannot read"):
        BearerTokens(str(tmp_path / "missing"))


class Calls(list[tuple[list[Decoded], list[Rejected], SourceRef]]):
    def __call__(self, decoded: list[Decoded], rejected: list[Rejected], source: SourceRef,
                 positions: dict[str, str]) -> None:
        assert positions == {}
        self.append((decoded, rejected, source))


def batches() -> tuple[WebhookBatches, Calls]:
    calls = Calls()
    return WebhookBatches(calls, SourceRef(cluster="c1", node="n1")), calls


def test_accept_event_list_commits_once_with_source_and_positions() -> None:
    rx, calls = batches()
    body = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                         "items": [make_event("a"), make_event("b")]})
    assert rx.accept(body, "kube-apiserver", "10.0.0.9") == (200, {"events": 2, "rejected": 0})
    (decoded, rejected, source), = calls
    assert [d.position for d in decoded] == ["webhook:10.0.0.9:1.items[0]", "webhook:10.0.0.9:1.items[1]"]
    assert source == SourceRef(cluster="c1", node="n1", stream="audit-webhook:kube-apiserver")


@pytest.mark.parametrize("body", [b"", b"{", b"null", b"[1", b'{"kind":"Status"}', b'{"verb":"get"}',
                                  b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[1]}'])
def test_accept_refuses_without_committing(body: bytes) -> None:
    rx, calls = batches()
    code, answer = rx.accept(body, "x", "1.2.3.4")
    assert code == 400 and answer["error"]
    assert calls == []


def test_accept_empty_list_is_ok() -> None:
    rx, calls = batches()
    assert rx.accept(b'{"kind":"EventList","items":[]}', "x", "r")[0] == 200
    assert calls == [([], [], SourceRef(cluster="c1", node="n1", stream="audit-webhook:x"))]


def test_kubeconfig_rejects_bad_combinations() -> None:
    with pytest.raises(ConfigError, match="https"):
        kubeconfig("http://x/", token_file="t")
    with pytest.raises(ConfigError, match="go together"):
        kubeconfig("https://x/", client_cert="c")
    with pytest.raises(ConfigError, match="not both"):
        kubeconfig("https://x/", client_cert="c", client_key="k", token_file="t")
    doc = kubeconfig("https://x:8443/", ca_file="/ca.crt", token_file="/t")
    assert doc["clusters"] == [{"name": "kubetrail", "cluster": {"server": "https://x:8443/",
                                                                 "certificate-authority": "/ca.crt"}}]


def test_deploy_example_is_what_webhook_config_prints() -> None:
    example = Path(__file__).parents[3] / "deploy" / "webhook" / "audit-webhook-kubeconfig.yaml"
    assert yaml.safe_load(example.read_text()) == kubeconfig(
        "https://10.96.0.50:8443/", ca_file="/etc/kubernetes/pki/kubetrail-ca.crt",
        client_cert="/etc/kubernetes/pki/audit-webhook-client.crt",
        client_key="/etc/kubernetes/pki/audit-webhook-client.key")


def test_tokens_file_is_read_as_csv_like_the_apiservers(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text('"tok,en-1",alice,uid1,"group1,group2"\n  tok2 , bob\nplain\n')
    tokens = BearerTokens(str(path))
    assert tokens.match("tok,en-1") == "alice"
    assert tokens.match('"tok') is None
    assert tokens.match("tok2") == "bob"
    assert tokens.match("plain") == "token3"
