"""Many writers, one trail: four `kubetrail ingest` processes write overlapping halves of one file into
one PostgreSQL store at the same time. Every event is stored once, the leaf indexes are contiguous,
`verify` is green and inclusion proofs check against the signed checkpoints (docs/specs/trail-format.md,
"Several writers")."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from kubetrail.store import open_store
from kubetrail.store.testing import execute as sql
from kubetrail.testing import make_event
from kubetrail.trail.checkpoint import open_checkpoint
from kubetrail.trail.keys import load_verifier
from kubetrail.trail.merkle import verify_inclusion

pytestmark = pytest.mark.integration


def write_halves(tmp: Path, n: int) -> list[Path]:
    """Four inputs: first half, second half, the middle half, and the first half again."""
    events = [orjson.dumps(make_event(f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd", user=f"user-{i % 7}",
                                      name=f"obj-{i}", time=f"2024-05-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:"
                                                          f"{i % 60:02d}.{i % 1000:06d}Z")) + b"\n"
              for i in range(n)]
    parts = [(0, n // 2), (n // 2, n), (n // 4, 3 * n // 4), (0, n // 2)]
    paths = []
    for k, (lo, hi) in enumerate(parts):
        p = tmp / f"part{k}.log"
        p.write_bytes(b"".join(events[lo:hi]))
        paths.append(p)
    return paths


def ingest_at_once(paths: list[Path], url: str, data: Path, *extra: str) -> None:
    env = {**os.environ, "KUBETRAIL_STORE": url}
    procs = [subprocess.Popen([sys.executable, "-m", "kubetrail", "ingest", str(p), "--data", str(data), "--json",
                               *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for p in paths]
    for p in procs:
        out, err = p.communicate(timeout=3600)
        assert p.returncode == 0 and b"Traceback" not in err, err.decode()[-2000:]


def check(url: str, data: Path, n: int, proofs: int = 20) -> None:
    store = open_store(url, readonly=True, data_dir=str(data))
    try:
        assert store.size() == n
        assert sql(store, "SELECT COUNT(*), COUNT(DISTINCT key), MIN(leaf_index), MAX(leaf_index) FROM entries"
                   ).fetchone() == (n, n, 0, n - 1)
        assert store.counters()["stored"] == n and store.counters()["duplicates"] == n  # 2n read, n stored
        latest = store.trail.latest_checkpoint()
        assert latest is not None and latest[0] == n
        cp = open_checkpoint(latest[2], load_verifier(str(data)))
        from kubetrail.trail.proofs import inclusion_proof_for

        for i in random.Random(1).sample(range(n), proofs):
            doc = inclusion_proof_for(store, i)
            assert doc["size"] == n and bytes.fromhex(doc["root"]) == cp.root
            assert verify_inclusion(i, n, bytes.fromhex(doc["leaf_hash"]), [bytes.fromhex(h) for h in doc["hashes"]],
                                    cp.root)
    finally:
        store.close()
    r = subprocess.run([sys.executable, "-m", "kubetrail", "verify", "--json", "--data", str(data), "--store", url],
                       capture_output=True, timeout=3600)
    assert r.returncode == 0, r.stderr.decode()
    doc = orjson.loads(r.stdout)
    assert doc["ok"] is True and doc["size"] == n


def test_four_writers_overlapping_halves(tmp_path: Path, pg_url: str) -> None:
    """The small variant, with detection and the credential inventory running in every writer."""
    n = 4000
    ingest_at_once(write_halves(tmp_path, n), pg_url, tmp_path / "data")
    check(pg_url, tmp_path / "data", n)


@pytest.mark.slow
def test_four_writers_200k_events(tmp_path: Path, pg_url: str) -> None:
    """The issue's figure: 200,000 events, four processes, overlapping halves (a few minutes here)."""
    n = 200_000
    ingest_at_once(write_halves(tmp_path, n), pg_url, tmp_path / "data", "--no-detect")
    check(pg_url, tmp_path / "data", n, proofs=200)
