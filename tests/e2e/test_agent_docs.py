"""docs/agent.md's "Try it": its config and every shell line run as written, against a simulated node
(CRI files as the kubelet writes them) and the stand-in API server serving the recorded cluster."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kubetrail.demo.apiserver import StandInApiServer
from kubetrail.demo.node import SimNode

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "agent.md"
RECORDING = ROOT / "tests" / "data" / "kube" / "cluster.json"
BIN = os.path.dirname(sys.executable)
WEB = "0b4d6a3e-1111-4d7c-9a4b-000000000001"


def blocks(lang: str) -> list[str]:
    section = DOC.read_text().split("## Try it", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def test_try_it_runs_as_written(tmp_path: Path) -> None:
    """The agent stores the simulated node's lines; each documented command exits 0 and answers."""
    (config,) = blocks("yaml")
    (script,) = blocks("sh")
    (tmp_path / "agent.yaml").write_text(config)
    api = StandInApiServer()
    api.load(json.loads(RECORDING.read_text()))
    api.start()
    (tmp_path / "kubeconfig").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": api.url}}], "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    node = SimNode(str(tmp_path / "pods"))
    node.start_pod("shop", "web-5d8f7c9b6-abcde", WEB, ["web"])
    node.write(WEB, "web", "GET /cart 200")
    node.write(WEB, "web", "login password=hunter2 ok", "stderr")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    background: list[subprocess.Popen[bytes]] = []
    outputs = []
    try:
        for line in script.strip().splitlines():
            if line.endswith("&"):
                background.append(subprocess.Popen(shlex.split(line[:-1]), cwd=tmp_path, env=env,
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    n = subprocess.run(["kubetrail", "logs", "--count"], cwd=tmp_path, env=env, capture_output=True,
                                       text=True).stdout.strip()
                    if n == "2":
                        break
                    time.sleep(0.3)
                continue
            r = subprocess.run(shlex.split(line), cwd=tmp_path, env=env, capture_output=True, text=True)
            assert r.returncode == 0, f"{line}: {r.stderr}"
            outputs.append(r.stdout)
    finally:
        for p in background:
            p.send_signal(signal.SIGTERM)
            p.wait(30)
        api.stop()
    workload, as_json, grep, count, stats = outputs
    assert "GET /cart 200" in workload and "password=[redacted]" in workload and "hunter2" not in workload
    rows = [json.loads(x) for x in as_json.splitlines()]
    assert [r["workload"] for r in rows] == ["deployment/shop/web"] * 2
    # the Node's and the Namespace's labels survive the store (StoredLogMeta) and reach --json
    assert {r["node_labels"].get("topology.kubernetes.io/zone") for r in rows} == {"eu-west-1a"}
    assert {r["namespace_labels"].get("pod-security.kubernetes.io/enforce") for r in rows} == {"restricted"}
    assert "password=[redacted]" in grep and count.strip() == "2"
    assert "deployment/shop/web (2)" in stats


@pytest.mark.parametrize("lang", ["yaml", "sh"])
def test_try_it_has_one_block(lang: str) -> None:
    """The section keeps one config and one script (the test above runs exactly those)."""
    assert len(blocks(lang)) == 1
