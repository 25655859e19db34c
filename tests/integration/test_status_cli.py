"""`kubetrail status`: exit 0 when all is well, 1 naming the problem when a live source is silent
or the trail fails verify; --json is /api/v1/status's document."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import Decoded, SourceRef
from kubetrail.store import open_store
from kubetrail.store.testing import execute
from kubetrail.testing import make_event

pytestmark = pytest.mark.integration


def status(data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubetrail", "status", "--data", str(data), *extra],
                          capture_output=True, text=True)


def ingest(data: Path, stream: str, n: int, first: int = 0) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    pipe = open_pipeline(Options(data_dir=str(data)))
    try:
        pipe.ingest_items([Decoded(make_event(f"00000000-0000-0000-0000-0000000002{i:02}", time=now), "json", f"p:{i}")
                           for i in range(first, first + n)], SourceRef(node="cp-1", stream=stream))
    finally:
        pipe.close()
        pipe.store.close()


def test_healthy_then_silent_then_tampered(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "detect.yaml").write_text(yaml.safe_dump({"stateful": {"silence_secs": 2}}))
    ingest(data, "audit-file:/var/log/kubernetes/audit/audit.log", 5)
    ingest(data, "file:/tmp/old-export.json", 3, first=50)  # history: never silent
    ok = status(data)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "verify      intact" in ok.stdout and "live     cp-1/audit-file:" in ok.stdout

    time.sleep(2.5)
    silent = status(data, "--json")
    assert silent.returncode == 1
    doc = json.loads(silent.stdout)
    assert not doc["ok"] and doc["trail"]["verify"]["ok"]
    [problem] = doc["problems"]
    assert "cp-1/audit-file:/var/log/kubernetes/audit/audit.log has delivered nothing" in problem
    by_source = {s["source"]: s for s in doc["sources"]}
    assert by_source["cp-1/audit-file:/var/log/kubernetes/audit/audit.log"]["silent"]
    assert not by_source["cp-1/file:/tmp/old-export.json"]["silent"]
    assert by_source["cp-1/file:/tmp/old-export.json"]["per_sec_5m"] == round(3 / 300, 3)  # events/s, last 5 min
    assert doc["kinds"] == [{"kind": "audit", "records": 8, "per_sec_5m": round(round(5 / 300, 3) + round(3 / 300, 3), 3)}]

    (data / "detect.yaml").write_text(yaml.safe_dump({"stateful": {"silence_secs": 3600}}))
    store = open_store(str(data))
    try:
        execute(store, "UPDATE entries SET verb = 'delete' WHERE leaf_index = 2")
    finally:
        store.close()
    tampered = status(data)
    assert tampered.returncode == 1
    assert "problem: the trail fails verify" in tampered.stdout and "at leaf 2" in tampered.stdout


def test_no_store_is_a_usage_error(tmp_path: Path) -> None:
    proc = status(tmp_path / "nothing-here")
    assert proc.returncode == 2 and proc.stderr.startswith("error:")
