"""Trail benchmarks: Merkle appends against bare hashing, and `verify` over a large store.

    .venv/bin/python bench/trail.py [--appends 200000] [--verify 1000000] [--small 100000]

1. appends/s of the compact-range append (leaf hash + the interior nodes it completes, collected for
   storage) against a bare ``hashlib.sha256(b"\\x00" + entry)`` loop over the same entry bytes, and
   their ratio; also the rate of the SQLite-backed tree (``StoredTree.append``: leaf and node rows).
2. time and peak RSS of ``verify`` (the same code as ``kubetrail verify``) over a store of
   ``--verify`` entries, and over ``--small`` entries to show that memory is flat in n. Each verify
   runs in a fresh subprocess so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time

import orjson

from kubetrail.store import open_store
from kubetrail.store.testing import execute, executemany
from kubetrail.trail.checkpointer import sign_now
from kubetrail.trail.entry import ENTRY_COLUMNS, encode_entry_v2, leaf_hash
from kubetrail.trail.merkle import CompactRange
from kubetrail.trail.note import Signer
from kubetrail.trail.tree import Tree

SIGNER = Signer("bench.kubetrail.test/trail", hashlib.sha256(b"bench key").digest())


def body_of(i: int, rng: random.Random) -> bytes:
    return orjson.dumps({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": f"{rng.getrandbits(128):032x}", "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/ns-{i % 50}/pods/p-{i}", "verb": rng.choice(["get", "list", "watch"]),
        "user": {"username": f"system:serviceaccount:ns-{i % 50}:sa", "groups": ["system:authenticated"]},
        "sourceIPs": [f"10.0.{i % 256}.{i % 200}"], "userAgent": "kube-controller-manager/v1.30.0",
        "objectRef": {"resource": "pods", "namespace": f"ns-{i % 50}", "name": f"p-{i}", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2024-05-01T10:00:00.000000Z", "stageTimestamp": "2024-05-01T10:00:00.001000Z",
    })


def columns_of(i: int, body: bytes) -> dict[str, object]:
    """The row a v2 entry is rebuilt from (plausible values of every covered column)."""
    ev = orjson.loads(body)
    return {"key": hashlib.sha256(body).hexdigest(), "time": 1714557600000000000 + i * 1000, "kind": "audit",
            "source": "bench/node-a/audit-file", "seq": i, "format": "event", "audit_id": ev["auditID"],
            "stage": ev["stage"], "level": ev["level"], "verb": ev["verb"], "username": ev["user"]["username"],
            "groups_json": orjson.dumps(ev["user"]["groups"]).decode(), "impersonated": "", "resource": "pods",
            "subresource": "", "api_group": "", "namespace": ev["objectRef"]["namespace"],
            "name": ev["objectRef"]["name"], "code": 200, "source_ips": orjson.dumps(ev["sourceIPs"]).decode(),
            "source_ip": ev["sourceIPs"][-1], "user_agent": ev["userAgent"], "request_uri": ev["requestURI"],
            "credential_id": "", "meta": b'["",[],"v1",1714557600000000000,1714557600001000000]'}


def entry_of(i: int, body: bytes) -> bytes:
    cols = columns_of(i, body)
    return encode_entry_v2([cols[c] for c in ENTRY_COLUMNS], hashlib.sha256(body).digest())


def bench_appends(n: int) -> None:
    rng = random.Random(1)
    entries = [entry_of(i, body_of(i, rng)) for i in range(n)]
    sha256 = hashlib.sha256
    t = time.perf_counter()
    for e in entries:
        sha256(b"\x00" + e).digest()
    bare = n / (time.perf_counter() - t)
    cr = CompactRange()
    nodes: list[tuple[int, int, bytes]] = []
    t = time.perf_counter()
    for start in range(0, n, 2000):  # the pipeline's batch size
        cr.append_entries(entries[start:start + 2000], nodes)
    merkle = n / (time.perf_counter() - t)
    one = CompactRange()
    t = time.perf_counter()
    for e in entries:
        one.append(leaf_hash(e), [])
    single = n / (time.perf_counter() - t)
    assert one.root() == cr.root()
    leaves = [leaf_hash(e) for e in entries]
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(tmp)
        tree = Tree(store.trail)
        t = time.perf_counter()
        for start in range(0, n, 2000):
            with store.transaction():
                tree.append(start, leaves[start:start + 2000])
        stored = n / (time.perf_counter() - t)
        store.close()
    print(f"appends ({n:,} entries of ~{sum(map(len, entries)) // n} bytes):")
    print(f"  bare hashlib.sha256 loop     {bare:>12,.0f} /s")
    print(f"  Merkle append, batches of 2000 {merkle:>10,.0f} /s   ratio {merkle / bare:.2f}x")
    print(f"  Merkle append, one at a time   {single:>10,.0f} /s   ratio {single / bare:.2f}x")
    print(f"  tree rows in SQLite (batches of 2000) {stored:>10,.0f} /s   ratio {stored / bare:.2f}x")


def build_store(path: str, n: int) -> None:
    """Rows written straight into the schema (the ingest path is bench/ingest.py's business)."""
    store = open_store(path)
    rng = random.Random(2)
    names = ["leaf_index", *ENTRY_COLUMNS, "entry", "leaf_hash", "body", "body_sha256"]
    sql = f"INSERT INTO entries ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    for start in range(0, n, 20000):
        bodies = [body_of(i, rng) for i in range(start, min(n, start + 20000))]
        with store.transaction():
            frames = store.codec.compress_many(bodies)  # type: ignore[attr-defined]
            rows = []
            for j, body in enumerate(bodies):
                i = start + j
                cols = columns_of(i, body)
                body_hash = hashlib.sha256(body).digest()
                e = encode_entry_v2([cols[c] for c in ENTRY_COLUMNS], body_hash)
                values = {**cols, "leaf_index": i, "entry": b"", "leaf_hash": leaf_hash(e), "body": frames[j],
                          "body_sha256": body_hash}
                rows.append(tuple(values[c] for c in names))
            executemany(store, sql, rows)
            Tree(store.trail).sync()
        if start % 200000 == 0:
            sign_now(store, SIGNER)
    sign_now(store, SIGNER)
    execute(store, "PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()


VERIFY_CHILD = """
import sys, time
from kubetrail.store import open_store
from kubetrail.trail.verify import verify_store
from bench_trail_key import SIGNER
store = open_store(sys.argv[1], create=False)
t = time.perf_counter()
report = verify_store(store, SIGNER.verifier())
dt = time.perf_counter() - t
hwm = [ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0]  # ru_maxrss survives exec
print(dt, hwm, report.as_json()["ok"], report.size)
"""


def bench_verify(n: int, tmp: str) -> tuple[float, int]:
    path = os.path.join(tmp, f"v{n}")
    t = time.perf_counter()
    build_store(path, n)
    built = time.perf_counter() - t
    with open(os.path.join(tmp, "bench_trail_key.py"), "w") as fh:
        fh.write(f"from kubetrail.trail.note import Signer\nSIGNER = Signer({SIGNER.name!r}, {SIGNER.seed!r})\n")
    r = subprocess.run([sys.executable, "-c", VERIFY_CHILD, path], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONPATH": tmp})
    dt, rss_kb, ok, size = r.stdout.split()
    assert ok == "True" and int(size) == n, r.stdout
    db_mb = os.path.getsize(os.path.join(path, "kubetrail.db")) / 1e6
    print(f"verify {n:>9,} entries: {float(dt):6.2f} s ({n / float(dt):,.0f} entries/s), peak RSS "
          f"{int(rss_kb) / 1024:.0f} MiB  [store {db_mb:.0f} MB, built in {built:.0f} s]")
    return float(dt), int(rss_kb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--appends", type=int, default=200_000)
    ap.add_argument("--verify", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=100_000)
    a = ap.parse_args()
    print(f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, {os.cpu_count()} cpus")
    bench_appends(a.appends)
    with tempfile.TemporaryDirectory() as tmp:
        for n in (a.small, a.verify):
            if n:
                bench_verify(n, tmp)
    print(f"(bench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
