"""What `kubetrail ingest` does not need is not imported at its start (issue 18, third pass): the
Kubernetes API client (httpx + lightkube, ~0.1 s of CPU) is imported where a connection is made,
though every command reaches ``kubeapi`` through the config's source types."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHECK = """
import sys
import kubetrail.cli.ingest, kubetrail.pipeline, kubetrail.kubeapi
print(",".join(sorted(m for m in ("httpx2", "lightkube") if m in sys.modules)))
"""


def test_ingest_does_not_import_the_kubernetes_client() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_client_is_there_when_a_connection_is_made(tmp_path: Path) -> None:
    """``kubeapi.connect`` still builds a client (from a kubeconfig; no request is made)."""
    from kubetrail import kubeapi

    cfg = tmp_path / "kubeconfig"
    cfg.write_text("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                   "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                   "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
                   "users: [{name: u, user: {token: t}}]\n")
    client = kubeapi.connect(str(cfg))
    try:
        assert str(client.base_url).startswith("https://127.0.0.1:1")
    finally:
        client.close()
