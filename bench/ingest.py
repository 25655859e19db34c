"""Ingest throughput (issue 18): `kubetrail ingest` with its default hooks next to orjson parsing alone.

    .venv/bin/python bench/ingest.py [--events 100000] [--runs 3] [--levels RequestResponse,Metadata]
                                     [--workers 0,2] [--dir DIR] [--no-detect] [--store-url URL]
                                     [--rate EVENTS_PER_SEC]

For each audit level, a log of the demo cluster's traffic (``bench/audit_events.py``: ~2.9 KB
RequestResponse or ~1 KB Metadata events) is written once (kept in ``--dir`` when given, and
reused when it is already there), then measured ``--runs`` times each:

* parse only: ``orjson.loads`` of every line, in this process;
* python walk: a pure-Python walk of the first 5,000 parsed events (``python_walk``), the interpreter's
  speed on this VM: a yardstick none of kubetrail's code runs in;
* ``kubetrail ingest FILE --workers N`` in a fresh process and a fresh store, for each N of
  ``--workers`` (0 = the single-process pipeline): the full default pipeline (decode, redaction,
  extraction, key, rows, SQLite commit, trail tree and checkpoints, detection, credentials; with
  ``--no-detect`` the last two are left out). Wall time from process start to exit.

``--rate`` writes logs with that many events per second of event time (``audit_events._squeezer``): the
default logs spread their events over the scenario's two hours (~14 per second), so the consumers' reorder
buffers (300 s of lateness) hold ~4,200 records and never exceed their memory budget; at a busy
apiserver's rate they hold far more, and what is over the budget is read back from the store when
released (``--rate 1000``: a 100,000-event log spans 100 s, all of it held until the end).

``--store-url`` (a PostgreSQL URL the bench may create schemas in) stores each run in a fresh schema of
that database instead of a fresh SQLite file (the server's own CPU is not counted: it is not below the
ingest process).

Prints events/s as min / median of the runs (min = the slowest run), the ratio of the median to
parse-only, the CPU µs per event (median) of the ingest process (with workers: the writer) and of
all its processes together (``all``: the writer, the preparation workers and the detection and
credentials process, which are children of multiprocessing's fork server: sampled from /proc every
50 ms, so the last < 50 ms of each is missed), the peak RSS of the ingest process and the largest
peak of the others (VmHWM, sampled likewise), and the 1-minute load average before each measurement (other work on
the machine slows every figure).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import audit_events  # noqa: E402  (bench/audit_events.py, beside this script)


def parse_only(path: str) -> float:
    t = time.perf_counter()
    with open(path, "rb") as fh:
        for line in fh:
            orjson.loads(line)
    return time.perf_counter() - t


WALK_SAMPLE = 5000  # events parsed once and walked for ``python_walk``


def python_walk(path: str, sample: int = WALK_SAMPLE) -> float:
    """Seconds per event of a pure-Python walk of the first ``sample`` parsed events (every key lowered,
    every string measured): the interpreter's speed on dict-heavy code, which none of kubetrail's code
    runs in. The VMs these figures come from differ by 2-3x between sessions, and orjson (C) does not
    move with the interpreter, so ``parse only`` alone cannot tell a slower VM from a slower pipeline."""
    with open(path, "rb") as fh:
        events = [orjson.loads(line) for line, _ in zip(fh, range(sample), strict=False)]
    t = time.perf_counter()
    for ev in events:
        _walk(ev)
    return (time.perf_counter() - t) / max(1, len(events))


def _walk(obj: object) -> int:
    if isinstance(obj, dict):
        return sum(len(k.lower()) + _walk(v) for k, v in obj.items())
    if isinstance(obj, list):
        return sum(_walk(v) for v in obj)
    return len(obj) if isinstance(obj, str) else 1


class Descendants(threading.Thread):
    """Samples the CPU seconds and peak RSS (MiB) of every process below ``root`` from /proc until stopped."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.cpu: dict[int, float] = {}
        self.rss: dict[int, float] = {}
        self.done = threading.Event()
        self.tick = os.sysconf("SC_CLK_TCK")

    def run(self) -> None:
        # Only the root and what descends from it are read (each thread's ``children``), not all of /proc:
        # a full scan every 50 ms took ~4 % of a core, from the two the measured pipeline runs on.
        while not self.done.wait(0.05):
            seen: set[int] = set()
            todo = [self.root]
            while todo:
                pid = todo.pop()
                if pid in seen:
                    continue
                seen.add(pid)
                try:
                    with open(f"/proc/{pid}/stat") as fh:
                        fields = fh.read().rsplit(")", 1)[1].split()
                    for tid in os.listdir(f"/proc/{pid}/task"):
                        with open(f"/proc/{pid}/task/{tid}/children") as fh:
                            todo.extend(int(c) for c in fh.read().split())
                except OSError:  # gone meanwhile
                    continue
                self.cpu[pid] = (int(fields[11]) + int(fields[12])) / self.tick
                try:
                    with open(f"/proc/{pid}/status") as fh:
                        hwm = next((ln for ln in fh if ln.startswith("VmHWM:")), "VmHWM: 0 kB")
                    self.rss[pid] = max(self.rss.get(pid, 0.0), int(hwm.split()[1]) / 1024)
                except OSError:
                    pass


def fresh_schema(url: str) -> tuple[str, str]:
    """(schema, a URL whose search path is that new, empty schema) in the database of ``url``."""
    import psycopg  # only with --store-url

    schema = f"kt_bench_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return schema, f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def ingest_once(path: str, workers: int | None, detect: bool, tmp: str,
                store_url: str | None = None) -> tuple[float, float, float, float, float]:
    """Wall seconds, CPU seconds of the ingest process and of all its processes, peak RSS in MiB of the
    ingest process and the largest of its other processes', for one ``kubetrail ingest``; ``workers``
    None passes no ``--workers`` (a build from before the flag); ``store_url``: a fresh schema of that
    PostgreSQL database instead of the data directory's SQLite file."""
    data = tempfile.mkdtemp(dir=tmp)
    schema, store = fresh_schema(store_url) if store_url else ("", "")
    args = [sys.executable, "-m", "kubetrail", "ingest", path, "--data", data, "--no-progress"] + \
        ([] if workers is None else ["--workers", str(workers)]) + ([] if detect else ["--no-detect"]) + \
        (["--store", store] if store else [])
    t = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
        others = Descendants(proc.pid)
        others.start()
        _, status, usage = os.wait4(proc.pid, 0)
        others.done.set()
        others.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            err.seek(0)
            sys.exit(f"ingest failed ({proc.returncode}): {err.read().decode(errors='replace')}")
    shutil.rmtree(data)
    if schema:
        drop_schema(store_url, schema)  # type: ignore[arg-type]
    # wait4's usage counts the children the ingest process reaped itself (forked workers are its
    # children) besides its own CPU: its own is the last /proc sample (50 ms apart), the whole is
    # the larger of the two accounts
    waited = usage.ru_utime + usage.ru_stime
    main_cpu = others.cpu.pop(proc.pid, waited)
    # the sampled VmHWM, not wait4's ru_maxrss: a child started with vfork (subprocess does) carries
    # the parent's high-water mark across exec into it (this script's, 408 MiB after generating a log)
    main_rss = others.rss.pop(proc.pid, 0.0) or usage.ru_maxrss / 1024
    return (wall, main_cpu, max(waited, main_cpu + sum(others.cpu.values())), main_rss,
            max(others.rss.values(), default=0.0))


def rates(n: int, seconds: list[float]) -> tuple[float, float]:
    """(min, median) events/s over the runs."""
    return n / max(seconds), n / statistics.median(seconds)


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--levels", default="RequestResponse,Metadata")
    ap.add_argument("--workers", default="0,2", help="comma-separated worker counts (0 = single process; "
                                                      "'none': no --workers flag, for builds before it)")
    ap.add_argument("--dir", help="keep the generated logs here (reused when present)")
    ap.add_argument("--no-detect", action="store_true", help="store + trail only (no detection/credentials)")
    ap.add_argument("--store-url", help="a PostgreSQL URL: each run stores into a fresh schema of its database")
    ap.add_argument("--rate", type=float, help="events per second of event time in the generated logs (default: "
                                               "the scenario's two hours; bench/audit_events.py --rate)")
    a = ap.parse_args()
    workers = [None if w == "none" else int(w) for w in a.workers.split(",")]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {a.runs} runs each, "
          f"pipeline: store + trail{'' if a.no_detect else ' + detection + credentials'}, "
          f"store: {'PostgreSQL (a fresh schema per run)' if a.store_url else 'SQLite'}")
    with tempfile.TemporaryDirectory() as tmp:
        where = a.dir or tmp
        os.makedirs(where, exist_ok=True)
        for level in a.levels.split(","):
            path = os.path.join(where, f"audit-{level}-{a.events}{f'-{a.rate:g}ps' if a.rate else ''}.log")
            if not os.path.exists(path):
                audit_events.write(path, level, a.events, rate=a.rate)
            with open(path, "rb") as fh:
                n = sum(1 for _ in fh)
            size = os.path.getsize(path)
            print(f"\n{level}: {n:,} events, {size / n:,.0f} bytes/event, {size / 2**20:,.1f} MiB"
                  f"{f', {a.rate:g} events/s of event time' if a.rate else ''}")
            la = load()
            parse = [parse_only(path) for _ in range(a.runs)]
            pmin, pmed = rates(n, parse)
            print(f"  {'parse only (orjson)':<28} min {pmin:>10,.0f}  median {pmed:>10,.0f} events/s"
                  f"{'':<29}load {la}")
            walk = [python_walk(path) for _ in range(a.runs)]
            print(f"  {'python walk (yardstick)':<28} min {1 / max(walk):>10,.0f}  median {1 / statistics.median(walk):>10,.0f}"
                  f" events/s{'':<29}load {load()}")
            for w in workers:
                la = load()
                runs = [ingest_once(path, w, not a.no_detect, tmp, a.store_url) for _ in range(a.runs)]
                walls = [r[0] for r in runs]
                cpu = statistics.median(r[1] for r in runs)
                cpu_all = statistics.median(r[2] for r in runs)
                rss = max(r[3] for r in runs)
                rss_other = max(r[4] for r in runs)
                imin, imed = rates(n, walls)
                label = "ingest, single process" if not w else f"ingest --workers {w}"
                others = f" / others' max {rss_other:4.0f}" if rss_other else ""
                print(f"  {label:<28} min {imin:>10,.0f}  median {imed:>10,.0f} events/s  "
                      f"{imed / pmed:.3f}x parse  CPU µs/ev main {cpu / n * 1e6:4.0f} all {cpu_all / n * 1e6:4.0f}  "
                      f"RSS MiB main {rss:4.0f}{others}  load {la}")


if __name__ == "__main__":
    main()
