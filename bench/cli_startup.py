"""Start-up time of the command line: `kubetrail --help` and `kubetrail query --count` (aim < 150 ms).

    .venv/bin/python bench/cli_startup.py [--runs 15] [--events 2500]

Each command runs ``--runs`` times as a fresh process (the way a user or a script runs it); the
figures are the best and the median wall-clock times and the best CPU time (user + system: what a
loaded, shared machine distorts least), next to a bare ``python -c pass`` (the
interpreter's own start-up, which no import change can remove) and ``python -c 'import click'``.
``query --count`` runs against the demo's store (``--events`` events, built once in a temp dir).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

BIN = os.path.join(os.path.dirname(sys.executable), "kubetrail")


def measure(cmd: list[str], runs: int) -> tuple[float, float, float]:
    """(best wall, median wall, best CPU) seconds; CPU = user + system time of the child process,
    which a loaded machine stretches far less than wall-clock time."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return min(walls), statistics.median(walls), min(cpus)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--events", type=int, default=2500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kubetrail-bench-") as tmp:
        data = os.path.join(tmp, "data")
        subprocess.run([BIN, "demo", "--data", data, "--events", str(args.events)], check=True,
                       stdout=subprocess.DEVNULL)
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("python -c 'import click'", [sys.executable, "-c", "import click"]),
            ("kubetrail --help", [BIN, "--help"]),
            ("kubetrail query --count", [BIN, "query", "--count", "--data", data]),
            ("kubetrail query --user evil-admin --json", [BIN, "query", "--user", "evil-admin", "--json",
                                                          "--data", data]),
            ("kubetrail query --limit 20 (table)", [BIN, "query", "--limit", "20", "--data", data]),
        ]
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
              f"{args.runs} runs each, demo store of {args.events} events")
        base = None
        for label, cmd in cases:
            best, median, cpu = measure(cmd, args.runs)
            base = cpu if base is None else base
            print(f"  {label:<42} wall best {best * 1000:5.0f} ms, median {median * 1000:5.0f} ms; "
                  f"CPU best {cpu * 1000:5.0f} ms ({cpu / base:4.1f}x bare python)")


if __name__ == "__main__":
    main()
