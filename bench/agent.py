"""Node agent throughput: CRI container log lines from files into the embedded store, next to
`cat` of the same files and to Debian's syslog-ng reading them into one local file.

    .venv/bin/python bench/agent.py [--pods 20] [--lines 10000] [--line-bytes 120]

Writes ``pods × lines`` CRI lines (every 50th a long line split into P parts at 4 KiB) under a
temporary ``/var/log/pods``-style root, then times, each from a cold start to the last line:

* ``cat``: reading every file to /dev/null (the floor: no parsing, no writes);
* ``kubetrail agent`` (no API server): parse, join partials, redact, key, store with positions,
  trail leaves, in one SQLite WAL store (``synchronous=FULL``); polled until ``logs`` holds them all;
* ``syslog-ng`` (``wildcard-file`` → ``file``, no parsing): skipped with a message where absent.

Prints lines/s for each and kubetrail's ratio to the other two.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from kubetrail.demo.node import SimNode

HERE = os.path.dirname(os.path.abspath(__file__))
KT = os.path.join(os.path.dirname(sys.executable), "kubetrail")
SYSLOG_NG = shutil.which("syslog-ng") or "/usr/sbin/syslog-ng"


def make_tree(root: str, pods: int, lines: int, line_bytes: int) -> tuple[int, int]:
    """The files; returns (logical lines, bytes)."""
    node = SimNode(root, partial_bytes=4096)
    for p in range(pods):
        uid = f"0b4d6a3e-2222-4d7c-9a4b-{p:012d}"
        node.start_pod("bench", f"app-{p}", uid, ["app"])
        c = node.pods[uid]["app"]
        with open(c.path, "ab") as fh:
            for i in range(lines):
                text = f"pod {p} line {i} " + ("x" * (line_bytes if i % 50 else 10_000))
                fh.write(f"{_stamp(node)} stdout F {text}\n".encode() if i % 50 else _split(node, text))
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
    return pods * lines, total


def _stamp(node: SimNode) -> str:
    from kubetrail.demo.node import rfc3339nano
    return rfc3339nano(node.tick())


def _split(node: SimNode, text: str) -> bytes:
    data = text.encode()
    parts = [data[i:i + 4096] for i in range(0, len(data), 4096)]
    return b"".join(f"{_stamp(node)} stdout {'F' if i == len(parts) - 1 else 'P'} ".encode() + part + b"\n"
                    for i, part in enumerate(parts))


def bench_cat(root: str, physical: int) -> float:
    files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
    t = time.perf_counter()
    subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)
    return physical / (time.perf_counter() - t)


def _stored(data: str) -> int:
    """Lines in the store, read in this process (a `kubetrail logs --count` per poll would cost a
    Python start-up each time and compete with the agent for the cores)."""
    from kubetrail.store import LogFilters, open_store

    try:
        with open_store(data, readonly=True) as store:
            return store.count_logs(LogFilters())
    except Exception:  # noqa: BLE001 - not created yet by the agent's first commit
        return 0


def bench_kubetrail(root: str, work: str, logical: int) -> float:
    data = os.path.join(work, "kt-data")
    cfg = os.path.join(work, "agent.yaml")
    with open(cfg, "w") as fh:
        fh.write(f"data_dir: {data}\ncheckpoint_interval_secs: 3600\ndetect: {{enabled: false}}\n"
                 f"sources:\n  - {{type: cri_logs, root: {root}, node: bench}}\n")
    t = time.perf_counter()
    proc = subprocess.Popen([KT, "agent", "--config", cfg, "--log-level", "warning"], stderr=subprocess.DEVNULL)
    try:
        while _stored(data) < logical:
            if proc.poll() is not None:
                raise SystemExit(f"kubetrail agent exited {proc.returncode}")
            time.sleep(0.5)
        return logical / (time.perf_counter() - t)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def bench_syslog_ng(root: str, work: str, physical: int) -> float | None:
    if not os.access(SYSLOG_NG, os.X_OK):
        print("  syslog-ng:      skipped (not installed; apt-get install syslog-ng-core)")
        return None
    out = os.path.join(work, "syslog-ng.out")
    conf = os.path.join(work, "syslog-ng.conf")
    with open(conf, "w") as fh:
        fh.write(f"""@version: 3.38
options {{ keep-hostname(yes); }};
source s_pods {{ wildcard-file(base-dir("{root}") filename-pattern("*.log") recursive(yes)
                 follow-freq(0.1) flags(no-parse) log-msg-size(65536)); }};
destination d_out {{ file("{out}" template("$MSG\\n")); }};
log {{ source(s_pods); destination(d_out); }};
""")
    t = time.perf_counter()
    proc = subprocess.Popen([SYSLOG_NG, "-F", "--no-caps", "-f", conf, "-R", os.path.join(work, "sng.persist"),
                             "-p", os.path.join(work, "sng.pid"), "-c", os.path.join(work, "sng.ctl")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        n = 0
        while n < physical:
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-300:] if proc.stderr else ""
                print(f"  syslog-ng:      failed to run: {err}")
                return None
            time.sleep(0.1)
            n = _count_lines(out)
        return physical / (time.perf_counter() - t)
    finally:
        proc.terminate()
        proc.wait(30)


def _count_lines(path: str) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except OSError:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=20)
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--line-bytes", type=int, default=120)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        root = os.path.join(work, "pods")
        logical, size = make_tree(root, a.pods, a.lines, a.line_bytes)
        physical = sum(_count_lines(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
        print(f"{a.pods} pods, {logical:,} lines ({physical:,} physical CRI lines), {size / 1e6:.1f} MB, "
              f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
        cat = bench_cat(root, physical)
        print(f"  cat:            {cat:>12,.0f} physical lines/s")
        sng = bench_syslog_ng(root, work, physical)
        if sng is not None:
            print(f"  syslog-ng:      {sng:>12,.0f} physical lines/s (file source -> file, no parsing)")
        kt = bench_kubetrail(root, work, logical)
        print(f"  kubetrail agent:{kt:>12,.0f} lines/s into the store ({kt * physical / logical:,.0f} physical/s)")
        print(f"  ratio kubetrail/cat:       {kt * physical / logical / cat:.4f}")
        if sng is not None:
            print(f"  ratio kubetrail/syslog-ng: {kt * physical / logical / sng:.3f}")


if __name__ == "__main__":
    main()
