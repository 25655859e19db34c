"""What one-event-one-record and event-time order cost per event (issue 9), in CPU time.

    .venv/bin/python bench/order.py [--events 50000] [--disorder 0.1]

Prints, per event: the record key v2 (canonical JSON + SHA-256) next to the v1 key (SHA-256 of the
body bytes); the reorder buffer (hold + release) for in-order arrival and with a share of records
arriving up to a minute late; and the CPU seconds of a whole ingest with detection and the credential
inventory at the default allowed lateness next to ``allowed_lateness_secs: 0`` (arrival order, the
buffer does nothing). CPU time, not wall time, so other work on shared cores disturbs it less.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import tempfile
import time

import orjson

sys.path.insert(0, os.path.dirname(__file__))

from ingest import make_file  # noqa: E402 - the same 50,000-event file as bench/ingest.py

from kubetrail.ordering import ReorderBuffer  # noqa: E402
from kubetrail.record import Decoded, SourceRef  # noqa: E402
from kubetrail.stages.extract import to_record  # noqa: E402
from kubetrail.stages.identity import event_key  # noqa: E402


def per_event(fn: object, items: list, repeat: int = 3) -> float:
    """Best of ``repeat``: CPU µs per item."""
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        for x in items:
            fn(x)  # type: ignore[operator]
        best = min(best, time.process_time() - t)
    return best / len(items) * 1e6


def buffer_cost(records: list, disorder: float, seed: int = 1) -> float:
    rng = random.Random(seed)
    arrival = sorted(records, key=lambda r: r.time + (rng.randint(0, 60) * 10**9 if rng.random() < disorder else 0))
    best = float("inf")
    for _ in range(3):
        buf = ReorderBuffer(300 * 10**9)
        t = time.process_time()
        for i in range(0, len(arrival), 2000):
            buf.add(arrival[i:i + 2000], 0)
            buf.ready()
            buf.pending_from(0)
        buf.drain()
        best = min(best, time.process_time() - t)
    return best / len(records) * 1e6


def ingest_cpu(path: str, lateness: float) -> float:
    """CPU seconds of one ``kubetrail ingest`` (detection on) in this process."""
    from click.testing import CliRunner

    from kubetrail.cli import cli

    with tempfile.TemporaryDirectory() as data:
        with open(os.path.join(data, "detect.yaml"), "w") as fh:
            fh.write(f"allowed_lateness_secs: {lateness}\n")
        t = time.process_time()
        r = CliRunner().invoke(cli, ["ingest", path, "--data", data, "--no-progress"])
        spent = time.process_time() - t
        assert r.exit_code == 0, r.output
    return spent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--disorder", type=float, default=0.1, help="share of records arriving up to 60 s late")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "audit.log")
        make_file(path, a.events)
        with open(path, "rb") as fh:
            events = [orjson.loads(line) for line in fh]
        records = []
        for i, ev in enumerate(events):
            r = to_record(Decoded(dict(ev), "event", str(i)), SourceRef(stream="bench"))
            r.leaf_index = i
            records.append(r)
        bodies = [r.body for r in records]
        redacted = [orjson.loads(b) for b in bodies]
        v1 = per_event(lambda b: hashlib.sha256(b"kubetrail-audit-key/v1\n" + b).hexdigest(), bodies)
        v2 = per_event(event_key, redacted)
        in_order = buffer_cost(records, 0.0)
        shuffled = buffer_cost(records, a.disorder)
        ordered = min(ingest_cpu(path, 300) for _ in range(2))
        arrival = min(ingest_cpu(path, 0) for _ in range(2))
    n = a.events
    print(f"events                 {n:,}, python {sys.version.split()[0]}")
    print(f"record key v1 (body)   {v1:6.2f} µs/event")
    print(f"record key v2 (canon.) {v2:6.2f} µs/event   ratio {v2 / v1:.2f}x")
    print(f"reorder buffer         {in_order:6.2f} µs/record in order, {shuffled:.2f} with {a.disorder:.0%} up to 60 s late")
    print(f"ingest, detection on   {ordered:6.2f} CPU s at lateness 300 s, {arrival:.2f} at 0 (arrival order)"
          f"   ratio {ordered / arrival:.2f}x  ({(ordered - arrival) / n * 1e6:+.1f} µs/event)")


if __name__ == "__main__":
    main()
