"""bench/stages.py runs against the code it measures (it broke once when a function it called moved:
issue 18's per-stage figures come from it). A small file, one repeat: every stage printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from kubetrail.testing import make_event

ROOT = Path(__file__).resolve().parents[2]


def test_stages_bench_runs_every_stage(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(orjson.dumps(make_event(f"00000000-0000-0000-0000-{i:012d}", user=f"u{i % 3}")) + b"\n"
                             for i in range(60)))
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "stages.py"), str(log), "--repeat", "1", "--batch", "20"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for stage in ("decode", "redact", "store", "rows", "tree", "detect", "credentials", "total"):
        assert stage in proc.stdout, (stage, proc.stdout)
