"""Redaction cost per event: the cheap pass and trigger alone, and the deep pass when it runs.

    .venv/bin/python bench/redact.py [--events 20000]

Three event mixes: the ingest benchmark's events (no secret anywhere: the trigger must stay quiet),
the same with every 20th event carrying a credential (exec arguments, a kubeconfig in a ConfigMap,
an env var), and only such events. Prints µs per event for ``to_record`` (redact, extract, key)
and the share of events that took the deep pass.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from urllib.parse import urlencode

import orjson

sys.path.insert(0, os.path.dirname(__file__))

from ingest import make_file  # noqa: E402

from kubetrail.record import Decoded, SourceRef  # noqa: E402
from kubetrail.stages.extract import to_record  # noqa: E402
from kubetrail.stages.redact import needs_deep_scan, redact_event  # noqa: E402
from kubetrail.testing import make_event  # noqa: E402


def secret_event(i: int) -> dict:
    kind = i % 3
    if kind == 0:
        query = urlencode([("command", "sh"), ("command", "-c"),
                           ("command", f'curl -H "Authorization: Bearer tok{i:08d}Zz" https://x')])
        return make_event(f"s-{i}", verb="create", resource="pods", subresource="exec",
                          requestURI=f"/api/v1/namespaces/ns/pods/p/exec?{query}")
    if kind == 1:
        cfg = f"apiVersion: v1\nkind: Config\nusers:\n- user:\n    token: tok{i:08d}Zz\n"
        return make_event(f"s-{i}", verb="create", resource="configmaps", requestObject={
            "kind": "ConfigMap", "data": {"kubeconfig": cfg},
            "binaryData": {"b": base64.b64encode(cfg.encode()).decode()}})
    return make_event(f"s-{i}", verb="create", resource="pods", requestObject={"kind": "Pod", "spec": {"containers": [
        {"name": "c", "image": "nginx", "env": [{"name": "DB_PASSWORD", "value": f"pw{i:08d}Zz"}]}]}})


def measure(events: list[bytes]) -> tuple[float, float]:
    """(best µs per event for to_record over three runs, share of events that took the deep pass)."""
    best = float("inf")
    source = SourceRef(stream="bench")
    for _ in range(3):
        decoded = [Decoded(orjson.loads(e), "event", "b") for e in events]
        t = time.perf_counter()
        for d in decoded:
            to_record(d, source)
        best = min(best, time.perf_counter() - t)
    deep = 0
    for e in events:
        ev = orjson.loads(e)
        redact_event(ev, scan_jwts=False)
        deep += needs_deep_scan(orjson.dumps(ev))
    return best / len(events) * 1e6, deep / len(events)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    a = ap.parse_args()
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"kubetrail-bench-redact-{os.getpid()}.log")
    try:
        make_file(path, a.events)
        with open(path, "rb") as fh:
            plain = fh.read().splitlines()
    finally:
        os.unlink(path)
    secrets = [orjson.dumps(secret_event(i)) for i in range(a.events)]
    mixed = [secrets[i] if i % 20 == 0 else e for i, e in enumerate(plain)]
    for name, events in (("no secrets", plain), ("1 in 20 with a credential", mixed), ("all with a credential", secrets)):
        us, deep = measure(events)
        print(f"{name:28s} {us:6.1f} µs/event to_record, deep pass for {deep:.1%}")


if __name__ == "__main__":
    main()
