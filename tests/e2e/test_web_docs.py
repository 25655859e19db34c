"""Every `sh` block of docs/web.md runs, in order, in one shell in an empty directory."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "web.md"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_web_md_shell_examples_run(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        if os.environ.get("CI"):
            pytest.fail("curl is missing (docs/web.md uses it); .ci/run installs it")
        pytest.skip("curl is not installed")
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 4
    script = "set -e\n" + "\n".join(blocks) + "\nwait\n"
    env = {**os.environ, "PORT": str(free_port()),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "records" in out and "verify      intact" in out  # kubetrail status
    assert "\n401\n" in out  # no token, no answer
    assert '"items":[' in out and '"priority":"Critical"' in out  # the alerts page of the API
    assert 'kubetrail_web_requests_total{code="200",route="/api/v1/alerts"} 1.0' in out
    assert "policy-lint.json" in out
    assert "True True" in out  # status --json: ok, verify ok
