"""Where the wall time of one `kubetrail ingest` goes for its main thread: running, waiting for a CPU,
or blocked (issue 18, bench/RESULTS.md "Eleventh session").

    .venv/bin/python bench/waits.py FILE [--workers 0] [--repeat 3]

In one process the main thread sets the pace; the SQLite store's commit thread works beside it and
takes the GIL now and then, and the pipeline waits for the previous batch's commit before handing it
to the consumers. Blocked time is what those waits (and any I/O) cost; time on the run queue is what
other work on the machine takes from it. Read from the kernel (``/proc/PID/task/TID/schedstat``: ns on
a CPU, ns runnable but waiting) every 20 ms until the process ends; Linux only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def one_run(path: str, workers: int) -> tuple[float, float, float, float]:
    """(wall, main thread on a CPU, main thread on the run queue, other threads' CPU) in seconds."""
    with tempfile.TemporaryDirectory() as data:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "kubetrail", "ingest", path, "--data", data, "--no-progress",
                                 "--workers", str(workers)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        main: list[str] = ["0", "0"]
        others: dict[str, int] = {}
        while proc.poll() is None:
            try:
                for tid in os.listdir(f"/proc/{proc.pid}/task"):
                    with open(f"/proc/{proc.pid}/task/{tid}/schedstat") as f:
                        fields = f.read().split()
                    if int(tid) == proc.pid:
                        main = fields
                    else:  # the commit threads: one per batch, each read until it ends
                        others[tid] = int(fields[0])
            except OSError:  # the process or a thread ended between the listing and the read
                pass
            time.sleep(0.02)
        wall = time.perf_counter() - started
        _, err = proc.communicate()
        if proc.returncode not in (0, 1):
            raise SystemExit(f"kubetrail ingest failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")
    return wall, int(main[0]) / 1e9, int(main[1]) / 1e9, sum(others.values()) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not os.path.exists("/proc/self/schedstat"):
        raise SystemExit("needs Linux's /proc/PID/task/TID/schedstat")
    for _ in range(args.repeat):
        wall, run, queued, others = one_run(args.file, args.workers)
        blocked = max(0.0, wall - run - queued)
        print(f"wall {wall:6.2f} s  main thread: running {run:6.2f} s  run queue {queued:5.2f} s  "
              f"blocked {blocked:5.2f} s ({blocked / wall * 100:4.1f} %)  other threads' CPU {others:6.2f} s")


if __name__ == "__main__":
    main()
