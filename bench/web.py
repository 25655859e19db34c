"""How the dashboard's listings cost with a million alerts (and the events of the demo).

Builds a store with the demo's events plus ``--alerts`` synthetic alerts (written straight into the
alerts table, as a long-running cluster would accumulate them), serves it with ``kubetrail serve``'s
app on uvicorn, and times real HTTP requests: the first page of /alerts and /api/v1/alerts, a page
deep in the list (by cursor), a filtered page, the overview and /api/v1/status (verify cached).
Prints milliseconds per request (median of ``--repeat``); the aim is that no page depends on how
many alerts exist (pagination everywhere).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from kubetrail.store import open_store
from kubetrail.store.testing import execute, executemany
from kubetrail.web.app import ServeContext, VerifyCache, build_app
from kubetrail.web.auth import Authenticator, TokenFile
from kubetrail.web.serving import BackgroundServer

RULES = [("Exec or Attach Into Pod", "Notice", 5), ("Secret Read By Unusual User", "Warning", 4),
         ("Privileged Pod Created", "Critical", 2), ("Audit Log Silence", "Critical", 2)]


def fill(data: str, n: int) -> None:
    store = open_store(data)
    try:
        base = 1_700_000_000_000_000_000
        chunk = 50_000
        for start in range(0, n, chunk):
            rows = []
            for i in range(start, min(start + chunk, n)):
                rule, prio, level = RULES[i % len(RULES)]
                rows.append((rule, prio, level, base + i * 10**9, f"user-{i % 997}", f"synthetic alert {i}", "{}",
                             '["k8s"]', "rule", f"bench:{i}", 0, base))
            execute(store, "BEGIN")
            executemany(store, "INSERT INTO alerts (rule, priority, level, time, subject, output, fields_json, "
                               "tags_json, origin, dedup_key, suppressed, created_ns) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        rows)
            execute(store, "COMMIT")
    finally:
        store.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--alerts", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "data")
        subprocess.run([sys.executable, "-m", "kubetrail", "demo", "--data", data], check=True, capture_output=True)
        started = time.perf_counter()
        fill(data, args.alerts)
        print(f"store: demo events + {args.alerts:,} alerts (filled in {time.perf_counter() - started:.1f}s)")
        (Path(tmp) / "tokens").write_text("bench\n")
        ctx = ServeContext(data_dir=data, open_store=lambda: open_store(data, readonly=True), verify=VerifyCache(data))
        server = BackgroundServer(build_app(ctx, Authenticator(TokenFile(str(Path(tmp) / "tokens")), False)),
                                  "127.0.0.1:0").start()
        base = f"http://127.0.0.1:{server.address[1]}"
        try:
            with httpx.Client(base_url=base, headers={"Authorization": "Bearer bench"}, timeout=120) as c:
                c.get("/api/v1/status")  # the first status runs verify once (then cached)
                deep = None
                cursor = None
                for _ in range(20):  # walk 20 pages of 500 to get a cursor deep in the list
                    cursor = c.get("/api/v1/alerts", params={"limit": 500, **({"cursor": cursor} if cursor else {})}
                                   ).json()["next"]
                deep = cursor
                cases = [("/alerts (first page)", "/alerts", {}),
                         ("/api/v1/alerts (first page)", "/api/v1/alerts", {}),
                         ("/api/v1/alerts (page 10,001-10,050)", "/api/v1/alerts", {"cursor": deep}),
                         ("/alerts?priority=Critical&subject=user-5", "/alerts", {"priority": "Critical", "subject": "user-5"}),
                         ("/alerts/1 (verified evidence)", "/alerts/1", {}),
                         ("/ (overview)", "/", {}),
                         ("/api/v1/status", "/api/v1/status", {}),
                         ("/api/v1/events (first page)", "/api/v1/events", {})]
                for label, path, params in cases:
                    times = []
                    for _ in range(args.repeat):
                        t = time.perf_counter()
                        r = c.get(path, params=params)
                        times.append((time.perf_counter() - t) * 1000)
                        assert r.status_code == 200, (path, r.status_code, r.text[:200])
                    print(f"  {label:<42} {statistics.median(times):8.1f} ms (median of {args.repeat})")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
