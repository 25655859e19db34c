"""Is the second CPU a free core? A pure-Python loop timed alone and while a GIL-free C loop runs on a
thread beside it (issue 18, bench/RESULTS.md "Tenth session").

    .venv/bin/python bench/vcpu_share.py [--loops 3000000] [--repeat 5]

The SQLite store inserts and commits a batch on a thread of its own, in C code that runs without the
GIL, while the main thread prepares the next batch in Python. That only pays if the two run at full
speed side by side; on a VM whose two vCPUs share a physical core (or a busy host) the Python loop
slows down while the other runs. Prints the loop's CPU seconds (min of ``--repeat``) alone and beside
each hog, and the slowdown.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable


def python_loop(n: int) -> float:
    start = time.thread_time()
    total = 0
    for i in range(n):
        total += i
    return time.thread_time() - start


def beside(hog: Callable[[], object], loops: int, repeat: int) -> float:
    """The loop's CPU time (min of ``repeat``) while ``hog`` runs again and again on another thread."""
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            hog()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.1)
    try:
        return min(python_loop(loops) for _ in range(repeat))
    finally:
        stop.set()
        thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loops", type=int, default=3_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    data = bytes(range(256)) * 16384  # 4 MiB: hashlib drops the GIL above 2 KiB
    db = sqlite3.connect(":memory:", check_same_thread=False)
    count = ("SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 200000) "
             "SELECT x FROM c)")
    hogs: dict[str, Callable[[], object]] = {
        "sha256": lambda: hashlib.sha256(data).digest(),
        "sqlite": lambda: db.execute(count).fetchone(),
        "sleep": lambda: time.sleep(0.01),  # an idle thread: the control
    }
    python_loop(a.loops)  # warm-up: the first loop of a process runs slower
    alone = min(python_loop(a.loops) for _ in range(a.repeat))
    print(f"python loop alone        {alone:.3f} s CPU (min of {a.repeat})")
    for name, hog in hogs.items():
        busy = beside(hog, a.loops, a.repeat)
        print(f"  beside a {name:<6} thread {busy:.3f} s CPU  ({(busy / alone - 1) * 100:+.0f} %)")


if __name__ == "__main__":
    main()
