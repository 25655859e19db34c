"""PEM decoding, the `creds` commands, and the public corpus (X509SHA256 uses → unaccounted certs)."""

from __future__ import annotations

import base64
import json
import os

import pytest
from click.testing import CliRunner
from cred_helpers import CA, csr_approve, csr_create, csr_issue, der_sha256, make_csr, pem_b64, use
from cryptography.hazmat.primitives import serialization

from kubetrail.cli import cli
from kubetrail.credentials.pem import decode_certificate, decode_csr
from kubetrail.testing import fixtures_dir


def test_decode_csr_in_every_encoding() -> None:
    csr = make_csr("system:node:w1", ("system:nodes",), dns=("w1.local",), ips=("192.168.1.5",))
    pem = csr.public_bytes(serialization.Encoding.PEM)
    der = csr.public_bytes(serialization.Encoding.DER)
    for value in (pem_b64(csr), pem.decode(), base64.b64encode(der).decode()):
        info = decode_csr(value)
        assert info is not None
        assert info.names.cn == "system:node:w1" and info.names.orgs == ["system:nodes"]
        assert info.names.dns == ["w1.local"] and info.names.ips == ["192.168.1.5"]
        assert info.key == "EC secp256r1" and info.signature_valid is True
    for junk in ("", "[redacted]", "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNU…", "not base64 at all!"):
        assert decode_csr(junk) is None


def test_decode_certificate_fingerprint_is_the_credential_id() -> None:
    ca = CA()
    cert = ca.sign(make_csr("alice", ("devs",)), days=10)
    info = decode_certificate(pem_b64(cert, [ca.cert]))
    assert info is not None
    assert info.fingerprint == der_sha256(cert)  # sha256 of the leaf DER, as the x509 authenticator computes
    assert info.serial == format(cert.serial_number, "x") and info.issuer == "CN=kubernetes"
    assert info.names.cn == "alice" and info.chain_length == 2
    assert info.not_after == int(cert.not_valid_after_utc.timestamp()) * 1_000_000_000
    assert decode_certificate(base64.b64encode(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")
                              .decode()) is None


def test_creds_commands(cluster) -> None:
    ca = CA()
    csr = make_csr("alice", ("system:masters",))
    cert = ca.sign(csr)
    fp = der_sha256(cert)
    cluster.feed(csr_create(csr, user="alice", groups=["system:authenticated"], at=0, name="csr-1", generate=False,
                            signer="example.com/x"),
                 csr_approve("csr-1", user="bob", at=1), csr_issue("csr-1", cert, at=2),
                 use("alice", 3, f"X509SHA256={fp}"), use("ghost", 4, "X509SHA256=" + "ef" * 32))
    cluster.close()
    run = CliRunner().invoke
    d = cluster.cli_args
    out = run(cli, ["creds", "list", "--json", *d])
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.output.splitlines()]
    creds = [r for r in rows if r["kind"] != "unknown"]
    assert [r["id"] for r in creds] == ["csr/csr-1", "x509/efefefefefefefef"]  # Critical first
    # the identities that sent the CSR requests without a credential id are accounted for, after them
    unknown = rows[2:]
    assert {r["id"] for r in unknown} >= {"unknown/alice", "unknown/bob"}
    assert all(r["kind"] == "unknown" and r["unaccounted"] and r["reason"] and r["uses"] >= 1 for r in unknown)
    for field in ("id", "kind", "subject", "groups", "created_by", "approved_by", "created_at", "expires_at",
                  "fingerprint", "jti", "uses", "first_used", "last_used", "source_ips", "flags", "evidence"):
        assert field in rows[0]
    assert all(f["explanation"] for f in rows[0]["flags"])
    only = run(cli, ["creds", "list", "--json", "--unaccounted", *d])
    assert [json.loads(x)["id"] for x in only.output.splitlines()] == ["x509/efefefefefefefef"] + \
        [r["id"] for r in unknown]
    assert run(cli, ["creds", "list", "--json", "--kind", "token", *d]).output == ""
    assert "csr/csr-1" in run(cli, ["creds", "list", "--active", "--at", "2025-06-02T00:00:00Z", *d]).output
    assert "csr/csr-1" in run(cli, ["creds", "list", "--expired", "--at", "2030-01-01T00:00:00Z", *d]).output
    text = run(cli, ["creds", "list", *d]).output
    assert "privileged-group" in text and "unaccounted" in text
    shown = run(cli, ["creds", "show", fp[:10], "--json", *d])
    assert shown.exit_code == 0 and json.loads(shown.output)["id"] == "csr/csr-1"
    human = run(cli, ["creds", "show", "csr/csr-1", *d]).output
    assert "creation chain:" in human and "approved" in human and "usage timeline:" in human
    missing = run(cli, ["creds", "show", "nope", *d])
    assert missing.exit_code == 2 and missing.output.strip().startswith("error: no credential")
    assert "Traceback" not in missing.output
    rebuilt = run(cli, ["creds", "rebuild", *d])
    assert rebuilt.exit_code == 0 and f"{len(rows)} credentials" in rebuilt.output
    assert [json.loads(x)["id"] for x in run(cli, ["creds", "list", "--json", *d]).output.splitlines()] == \
        [r["id"] for r in rows]


def test_creds_list_without_a_store_is_a_one_line_error(tmp_path) -> None:
    r = CliRunner().invoke(cli, ["creds", "list", "--data", str(tmp_path / "none")])
    assert r.exit_code == 2 and r.output.startswith("error:")


@pytest.mark.needs_fixtures
def test_corpus_x509_uses_are_unaccounted_certificates(tmp_path) -> None:
    corpus = fixtures_dir() / "corpus"
    if not corpus.is_dir():
        pytest.skip("shared fixtures not present")
    files = sorted(str(p) for p in corpus.rglob("*") if p.suffix in (".json", ".jsonl", ".log")
                   and "panther" not in str(p) and "original" not in str(p))
    expected = {}
    for f in files:
        with open(f, errors="replace") as fh:
            for line in fh:
                if "X509SHA256=" in line:
                    ev = json.loads(line)
                    cid = ev["user"]["extra"]["authentication.kubernetes.io/credential-id"][0]
                    expected.setdefault(cid, set()).add(ev["auditID"])
    assert expected
    data = str(tmp_path / "data")
    CliRunner().invoke(cli, ["ingest", *files, "--data", data, "--no-progress"])
    rows = [json.loads(x) for x in CliRunner().invoke(cli, ["creds", "list", "--json", "--unaccounted", "--kind",
                                                            "cert", "--data", data]).output.splitlines()]
    got = {r["credential_id"]: r for r in rows}
    for cid, audit_ids in expected.items():
        r = got[cid]
        assert r["unaccounted"] and r["kind"] == "cert" and r["uses"] == len(audit_ids)
        assert {u["auditID"] for u in r["evidence"]["uses"]} == audit_ids
        assert all(isinstance(u["leaf_index"], int) for u in r["evidence"]["uses"])
        assert r["policy_gaps"][0]["code"] == "cert-issuance-not-seen"
    assert os.path.exists(os.path.join(data, "kubetrail.db"))
