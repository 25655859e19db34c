"""Both store engines at 1,000,000 events: insert rate, three queries, bytes per event.

    .venv/bin/python bench/store.py [--events 1000000] [--engines sqlite,postgres] [--pg-url URL]

For each engine it loads ``--events`` synthetic audit events (the mix below) through the store's own
append (the trail's tree maintained in the same transaction, as ingest does; records are built
before the clock starts, so the rate is the store's), runs the credential inventory over them, then
times, as the CLI runs them (in process, warm, best of 5):

1. ``kubetrail query --user U --since T --count``
2. ``kubetrail query --resource secrets --verb list --json`` (every row serialised to JSON)
3. ``kubetrail creds show ID --json`` (a credential timeline: the 200 first uses of a token used
   by 1 % of the events)

and the same three as whole ``kubetrail`` processes (process start and imports included, with the
modules' bytecode caches in place as an installed kubetrail has them: pip compiles them at install,
so a run under ``PYTHONDONTWRITEBYTECODE=1`` from a source checkout would time the compiler, not the
command), and the bytes the store occupies per event. ``--dir DIR --reuse`` (with ``--pg-url``
for PostgreSQL) times the queries again on stores a previous run left in DIR. Without ``--pg-url`` a throwaway PostgreSQL server is started
(initdb into a temp dir, as the tests do).

The mix (seeded): 40 % kube-system controllers on leases/endpoints/configmaps, 30 % kubelets on
pods/nodes, 20 % service accounts, 10 % humans; 0.3 % of the events are ``list secrets``; 1 % carry
the credential id of one bound service-account token.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from kubetrail.cli.query import record_row
from kubetrail.credentials.consumer import CredentialConsumer
from kubetrail.credentials.report import show
from kubetrail.record import Decoded, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.store import QueryFilters, Store, open_store
from kubetrail.store.testing import execute
from kubetrail.testing import make_event
from kubetrail.timefmt import format_ns, parse_when
from kubetrail.trail.tree import sync_hook

BATCH = 2000
T0 = parse_when("2024-05-01T00:00:00Z")
JTI = "bench-token-0001"
USERS = [("system:kube-controller-manager", ["leases", "endpoints", "configmaps"], 0.40),
         ("system:node:node-{n}", ["pods", "nodes"], 0.30),
         ("system:serviceaccount:app-{n}:default", ["configmaps", "pods", "services"], 0.20),
         ("user-{n}@example.com", ["pods", "deployments", "services"], 0.10)]


def pick(roll: float) -> tuple[str, list[str]]:
    acc = 0.0
    for pattern, resources, share in USERS:
        acc += share
        if roll < acc:
            return pattern, resources
    return USERS[-1][0], USERS[-1][1]


def events(n: int, seed: int = 1) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for i in range(n):
        t = T0 + i * 5_000_000  # 200 events/s over the run
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 10**9)) + f".{t % 10**9 // 1000:06d}Z"
        roll = rng.random()
        if roll < 0.003:
            user, resource, verb = "user-3@example.com", "secrets", "list"
        else:
            pattern, resources = pick(roll)
            user, resource = pattern.format(n=rng.randrange(20)), rng.choice(resources)
            verb = rng.choice(["get", "list", "watch", "update", "patch"])
        ev = make_event(f"{i:012d}-bench", verb=verb, user=user, resource=resource, name=f"o-{i % 5000}",
                        namespace=f"ns-{i % 40}", time=ts, source_ips=[f"10.0.{i % 250}.{i % 200 + 1}"])
        if i % 100 == 7:
            ev["user"] = {"username": "system:serviceaccount:ci:deployer", "groups": ["system:serviceaccounts"],
                          "extra": {"authentication.kubernetes.io/credential-id": [f"JTI={JTI}"]}}
        yield ev


def load(store: Store, n: int) -> tuple[float, float]:
    """(append seconds, inventory seconds) for ``n`` events in batches of BATCH."""
    store.append_hooks.append(sync_hook)
    inventory = CredentialConsumer(store, alerts=False, lateness_secs=0)
    appended = inventoried = 0.0
    src = SourceRef(cluster="bench", node="cp-1", stream="audit-file")
    it = events(n)
    done = 0
    while done < n:
        batch = [to_record(Decoded(ev, "event", f"b:{done + j}"), src)
                 for j, ev in zip(range(min(BATCH, n - done)), it, strict=False)]
        t = time.perf_counter()
        stored = store.append(batch).stored
        appended += time.perf_counter() - t
        t = time.perf_counter()
        inventory.consume(stored, store)
        inventoried += time.perf_counter() - t
        done += len(batch)
        if done % 100_000 == 0:
            print(f"  {done:,} events loaded", file=sys.stderr, flush=True)
    inventory.close()
    return appended, inventoried


def best(fn: Callable[[], object], runs: int = 5) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def midpoint(events: int) -> int:
    """The time half-way through the run (200 events/s): ``--since`` of the count query."""
    return T0 + events * 5_000_000 // 2


def queries(location: str, data: str, events: int = 1_000_000) -> dict[str, tuple[float, int]]:
    since = midpoint(events)  # the second half of the run
    out: dict[str, tuple[float, int]] = {}

    def count() -> int:
        with open_store(location, readonly=True, data_dir=data) as s:
            return s.count_matching(QueryFilters(user=["system:kube-controller-manager"], since=since))

    def listing() -> int:
        with open_store(location, readonly=True, data_dir=data) as s:
            return sum(len(orjson.dumps(record_row(r))) > 0 for r in
                       s.query(QueryFilters(resource=["secrets"], verb=["list"]), body=False))

    def timeline() -> int:
        with open_store(location, readonly=True, data_dir=data) as s:
            return len(orjson.dumps(show(s, f"jti/{JTI}")))

    for name, fn in (("count", count), ("secrets", listing), ("timeline", timeline)):
        sec, rows = best(fn)
        out[name] = (sec, int(rows))  # type: ignore[call-overload]
    return out


def cli_times(location: str, data: str, events: int = 1_000_000) -> dict[str, float]:
    cmds = {"count": ["query", "--user", "system:kube-controller-manager", "--since",
                      str(format_ns(midpoint(events))), "--count"],
            "secrets": ["query", "--resource", "secrets", "--verb", "list", "--json"],
            "timeline": ["creds", "show", f"jti/{JTI}", "--json"]}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = {}
    for name, args in cmds.items():
        runs = []
        for i in range(4):  # the first run writes any missing bytecode cache and is not counted
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "kubetrail", *args, "--store", location, "--data", data],
                           check=True, stdout=subprocess.DEVNULL, env=env)
            if i:
                runs.append(time.perf_counter() - t)
        out[name] = min(runs)
    return out


def bench(engine: str, location: str, data: str, n: int, reuse: bool = False) -> None:
    if reuse:
        q, c = queries(location, data), cli_times(location, data)
        print(f"{engine}: the store left in {data} (load average {os.getloadavg()[0]:.2f})")
        report(q, c)
        return
    store = open_store(location, data_dir=data)
    try:
        appended, inventoried = load(store, n)
        if engine == "postgres":
            # what autovacuum does soon after a load; the CHECKPOINT first, because the throwaway server
            # runs synchronous_commit=off and VACUUM marks pages all-visible (index-only scans) only
            # once their rows' commits are on disk
            try:
                execute(store, "CHECKPOINT")
            except Exception as exc:  # noqa: BLE001 - --pg-url without the privilege: autovacuum will
                print(f"  (no CHECKPOINT: {exc})", file=sys.stderr)
            execute(store, "VACUUM ANALYZE")
        size = store.db_bytes()
    finally:
        store.close()
    q = queries(location, data, n)
    c = cli_times(location, data, n)
    print(f"{engine}: {n:,} events")
    print(f"  insert (append + tree)   {n / appended:>10,.0f} events/s   ({appended:.1f} s)")
    print(f"  credential inventory     {n / inventoried:>10,.0f} events/s   ({inventoried:.1f} s)")
    print(f"  stored                   {size / n:>10,.0f} bytes/event ({size / 2**20:,.0f} MiB)")
    print(f"  load average {os.getloadavg()[0]:.2f}")
    report(q, c)


def report(q: dict[str, tuple[float, int]], c: dict[str, float]) -> None:
    labels = {"count": "query --user U --since T --count", "secrets": "query --resource secrets --verb list --json",
              "timeline": "creds show (token timeline) --json"}
    for k, label in labels.items():
        sec, rows = q[k]
        unit = "count" if k == "count" else ("rows" if k == "secrets" else "bytes")
        verdict = "met" if sec < 0.3 and c[k] < 0.3 else "NOT met"
        print(f"  {label:<44} {sec * 1000:7.1f} ms in process ({unit} {rows:,}), "
              f"{c[k] * 1000:7.1f} ms as a process; aim < 300 ms {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--engines", default="sqlite,postgres")
    ap.add_argument("--pg-url", default=None, help="an empty PostgreSQL schema to use (default: a throwaway server)")
    ap.add_argument("--dir", default=None, help="keep the stores here (default: a temporary directory)")
    ap.add_argument("--reuse", action="store_true", help="only time the queries on the stores in --dir "
                    "(and --pg-url) a previous run loaded")
    a = ap.parse_args()
    if a.reuse and (a.dir is None or ("postgres" in a.engines and a.pg_url is None)):
        ap.error("--reuse needs --dir (and --pg-url for postgres)")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {a.events:,} events, batches of {BATCH}")
    with tempfile.TemporaryDirectory() as scratch:
        tmp = a.dir or scratch
        for engine in a.engines.split(","):
            data = os.path.join(tmp, engine)
            if engine == "sqlite":
                bench(engine, data, data, a.events, a.reuse)
                continue
            server = None
            url = a.pg_url
            if url is None:
                sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
                from conftest import PostgresServer  # the tests' throwaway server

                server = PostgresServer()
                url = server.url("bench")
            try:
                bench(engine, url, data, a.events, a.reuse)
            finally:
                if server is not None:
                    server.close()


if __name__ == "__main__":
    main()
