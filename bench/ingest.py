"""Ingest throughput: `kubetrail ingest` of a 200,000-event file next to orjson parsing it alone.

    .venv/bin/python bench/ingest.py [--events 200000] [--detect]

Prints events/s for parse-only (orjson.loads per line) and for the full ingest (decode, redact,
extract, key, compress, SQLite commit, trail leaf; plus detection with --detect), and their ratio.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

import orjson

from kubetrail.testing import make_event

USERS = ["system:kube-controller-manager", "system:kube-scheduler", "system:node:node-1", "alice@example.com",
         "system:serviceaccount:kube-system:coredns", "system:apiserver"]
RESOURCES = [("pods", ""), ("leases", ""), ("configmaps", ""), ("endpoints", ""), ("pods", "status"),
             ("secrets", ""), ("nodes", "status"), ("events", "")]
VERBS = ["get", "list", "watch", "update", "patch", "create"]


def make_file(path: str, n: int) -> int:
    rng = random.Random(1)
    size = 0
    with open(path, "wb") as fh:
        for i in range(n):
            res, sub = rng.choice(RESOURCES)
            verb = rng.choice(VERBS)
            extra = {}
            if verb in ("create", "update", "patch") and res != "secrets":
                extra["requestObject"] = {"kind": "Pod", "metadata": {"name": f"p-{i}", "labels": {"app": "web"}},
                                          "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}
            ev = make_event(f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd", verb=verb, user=rng.choice(USERS),
                            resource=res, subresource=sub, name=f"obj-{i % 500}",
                            time=f"2024-05-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:06d}Z",
                            annotations={"authorization.k8s.io/decision": "allow",
                                         "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding"},
                            **extra)
            line = orjson.dumps(ev) + b"\n"
            size += len(line)
            fh.write(line)
    return size


def parse_only(path: str) -> float:
    t = time.perf_counter()
    with open(path, "rb") as fh:
        for line in fh:
            orjson.loads(line)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--detect", action="store_true", help="also run detection during ingest")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "audit.log")
        size = make_file(path, a.events)
        parse_s = min(parse_only(path) for _ in range(3))
        args = [sys.executable, "-m", "kubetrail", "ingest", path, "--data", os.path.join(tmp, "data"),
                "--no-progress"] + ([] if a.detect else ["--no-detect"])
        t = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        ingest_s = time.perf_counter() - t
        db = os.path.getsize(os.path.join(tmp, "data", "kubetrail.db"))
    n = a.events
    print(f"events              {n:,} ({size / n:,.0f} bytes/event, {size / 2**20:,.1f} MiB)")
    print(f"parse only (orjson) {n / parse_s:,.0f} events/s ({parse_s:.2f}s)")
    print(f"kubetrail ingest    {n / ingest_s:,.0f} events/s ({ingest_s:.2f}s, detection {'on' if a.detect else 'off'},"
          " process start included)")
    print(f"ratio               {parse_s / ingest_s:.3f}x parse-only")
    print(f"store size          {db / 2**20:,.1f} MiB ({db / size:.2f}x the input)")


if __name__ == "__main__":
    main()
