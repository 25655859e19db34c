"""Nothing secret is stored: planted tokens appear in no byte of the data directory after `ingest`."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sqlite3
import zlib

import zstandard
from click.testing import CliRunner
from cred_helpers import event, make_jwt, sa_claims, token_request, use

from kubetrail.cli import cli
from kubetrail.store.sqlite import Store


def _forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw).rstrip(b"=")]


def _blobs(path: str) -> list[bytes]:
    """Every BLOB/TEXT cell of every table, decompressed where it is a zstd or zlib frame."""
    out: list[bytes] = []
    store = Store.open(os.path.dirname(path), create=False)
    conn = sqlite3.connect(path)
    try:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for row in conn.execute(f"SELECT * FROM {table}"):
                for cell in row:
                    if isinstance(cell, str):
                        out.append(cell.encode())
                    elif isinstance(cell, bytes):
                        out.append(cell)
                        for decode in (store.decompress, zlib.decompress):
                            with contextlib.suppress(zstandard.ZstdError, zlib.error, ValueError):
                                out.append(decode(cell))
    finally:
        conn.close()
        store.close()
    return out


def test_planted_tokens_are_nowhere_in_the_data_directory(tmp_path) -> None:
    sa_token = make_jwt(sa_claims("ci", "deployer", "jti-planted", iat=0, exp=3600))
    legacy_token = make_jwt({"iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:ci:old"})
    review_token = make_jwt({"iss": "x", "sub": "y", "jti": "r"})
    boot_secret = "0123456789abcdef"
    legacy_fill = {"kind": "Secret", "type": "kubernetes.io/service-account-token",
                   "metadata": {"name": "old-token", "namespace": "ci",
                                "annotations": {"kubernetes.io/service-account.name": "old"}},
                   "data": {"token": base64.b64encode(legacy_token.encode()).decode()}}
    boot = {"kind": "Secret", "type": "bootstrap.kubernetes.io/token",
            "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
            "stringData": {"token-id": "abcdef", "token-secret": boot_secret}}
    review = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "spec": {"token": review_token}}
    events = [
        token_request("ci", "deployer", user="system:node:w", at=0, token=sa_token, jti="jti-planted"),
        event(verb="update", resource="secrets", namespace="ci", name="old-token", at=1,
              user="system:serviceaccount:kube-system:tokens-controller", level="RequestResponse",
              request=legacy_fill, response=legacy_fill),
        event(verb="create", resource="secrets", namespace="kube-system", name="bootstrap-token-abcdef", at=2,
              user="admin", level="RequestResponse", request=boot, response=boot, code=201),
        event(verb="create", resource="tokenreviews", api_group="authentication.k8s.io", at=3, user="kube-apiserver",
              level="RequestResponse", request=review, response=review, code=201),
        use("system:serviceaccount:ci:deployer", 4, "JTI=jti-planted"),
    ]
    src = tmp_path / "audit.log"
    src.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    data = str(tmp_path / "data")
    r = CliRunner().invoke(cli, ["ingest", str(src), "--data", data, "--no-progress"])
    assert r.exit_code == 0, r.output
    listed = CliRunner().invoke(cli, ["creds", "list", "--json", "--data", data])
    assert "jti/jti-planted" in listed.output  # the inventory was built from these very events

    needles = [n for s in (sa_token, legacy_token, review_token, boot_secret) for n in _forms(s)]
    needles += [sa_token.split(".")[2].encode(), legacy_token.split(".")[2].encode()]  # signatures alone
    files = [os.path.join(d, f) for d, _, fs in os.walk(data) for f in fs]
    assert any(f.endswith("kubetrail.db") for f in files)
    for path in files:
        with open(path, "rb") as fh:
            content = fh.read()
        for n in needles:
            assert n not in content, f"secret found in {path}"
    cells = _blobs(os.path.join(data, "kubetrail.db"))
    # the search can see inside bodies: the kept (non-secret) claims are there, decompressed
    assert any(b'kubetrail.dev/token-claims' in c and b"jti-planted" in c for c in cells)
    for cell in cells:
        for n in needles:
            assert n not in cell, "secret found in a stored (decompressed) cell"
