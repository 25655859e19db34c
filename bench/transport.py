"""Transport throughput and memory: files -> agent -> WAL -> NATS -> collector -> store.

    .venv/bin/python bench/transport.py [--lines 100000] [--backlog-mib 1024] [--skip-rss] [--skip-syslog-ng]

Workload: ``--lines`` container log lines in CRI format under a kubelet-style ``/var/log/pods``
tree (the ``cri_logs`` source; the audit log and the ``audit_file`` source where that source is not
built), ~180 bytes each, written before the processes start. Everything runs as real processes on
127.0.0.1: nats-server (JetStream, file storage), ``kubetrail agent``, ``kubetrail collector``.

Prints lines/s:

* **end to end**: agent, broker and collector all running, until the store holds every line;
* **per hop**: files -> WAL (broker down), WAL -> NATS (broker up, no collector), NATS -> store
  (collector alone);
* next to **syslog-ng** (Debian's syslog-ng-core) reading the same files through a reliable disk
  buffer into a TCP receiver (skipped with a message where syslog-ng is absent), and ``cat``;
* the agent's **peak RSS** (VmHWM) while it drains a ``--backlog-mib`` WAL to NATS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import yaml

from kubetrail.buffer import Wal, inspect
from kubetrail.stages.seal import Seal
from kubetrail.testing import NatsServer, free_port, make_event, make_records

AGENT_RUNNER = """
import signal, sys, threading
from kubetrail.config import load
from kubetrail.pipeline import run_agent
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
run_agent(load(sys.argv[1]), stop, log=lambda m: print(m, file=sys.stderr))
"""


def have_cri() -> bool:
    try:
        import kubetrail.sources.cri_logs  # noqa: F401
    except ImportError:
        return False
    return True


def agent_cmd(cfg: str) -> list[str]:
    """``kubetrail agent --config`` where that command exists, else the same pipeline call."""
    from kubetrail.cli import COMMANDS

    if "agent" in COMMANDS:
        return [sys.executable, "-m", "kubetrail", "agent", "--config", cfg]
    return [sys.executable, "-c", AGENT_RUNNER, cfg]


def write_workload(root: Path, n: int, cri: bool) -> tuple[list[Path], int]:
    """CRI lines in 10 pods (or audit events in one file); returns the files and their bytes."""
    files = []
    if cri:
        per = n // 10
        for p in range(10):
            d = root / "pods" / f"shop_web-{p}_0000000{p}-aaaa-bbbb-cccc-dddddddddddd" / "app"
            d.mkdir(parents=True)
            f = d / "0.log"
            with open(f, "wb") as fh:
                for i in range(per):
                    msg = orjson.dumps({"seq": p * per + i, "msg": "x" * 120}).decode()
                    fh.write(f"2026-11-26T10:00:{i // 1000 % 60:02d}.{i % 1000:03d}000000Z stdout F {msg}\n".encode())
            files.append(f)
    else:
        f = root / "audit.log"
        with open(f, "wb") as fh:
            for i in range(n):
                fh.write(orjson.dumps(make_event(f"b-{i:08d}", name=f"p-{i}")) + b"\n")
        files.append(f)
    return files, sum(f.stat().st_size for f in files)


def agent_yaml(tmp: Path, url: str, cri: bool) -> str:
    source = ({"type": "cri_logs", "root": str(tmp / "pods"), "node": "bench", "poll_ms": 50} if cri else
              {"type": "audit_file", "path": str(tmp / "audit.log"), "node": "bench", "poll_ms": 50})
    doc = {"data_dir": str(tmp / "agent"), "sources": [source],
           "buffer": {"dir": str(tmp / "agent" / "wal"), "max_bytes": 8 << 30},
           "sink": {"type": "nats", "url": url, "stream": "BENCH", "subject": "bench.records",
                    "connect_timeout_secs": 1}}
    path = tmp / "agent.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def collector_yaml(tmp: Path, url: str) -> str:
    doc = {"data_dir": str(tmp / "store"), "checkpoint_interval_secs": 5, "detect": {"enabled": False},
           "source": {"type": "nats", "url": url, "stream": "BENCH", "durable": "bench", "connect_timeout_secs": 1}}
    path = tmp / "collector.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def stored(data: Path) -> int:
    import sqlite3

    db = data / "kubetrail.db"
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def wait(cond, secs: float = 1800.0, every: float = 0.1) -> float:
    t = time.perf_counter()
    end = time.monotonic() + secs
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError("the benchmark did not finish")
        time.sleep(every)
    return time.perf_counter() - t


def spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    fh = open(log, "ab")  # noqa: SIM115 - the child keeps it
    try:
        return subprocess.Popen(cmd, stdout=fh, stderr=fh)
    finally:
        fh.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def end_to_end(base: Path, n: int, cri: bool) -> float:
    tmp = base / "e2e"
    tmp.mkdir()
    write_workload(tmp, n, cri)
    server = NatsServer(tmp / "nats").start()
    col = spawn([sys.executable, "-m", "kubetrail", "collector", "--config", collector_yaml(tmp, server.url)],
                tmp / "collector.log")
    t = time.perf_counter()
    agent = spawn(agent_cmd(agent_yaml(tmp, server.url, cri)), tmp / "agent.log")
    try:
        wait(lambda: stored(tmp / "store") >= n, every=0.2)
        return time.perf_counter() - t
    finally:
        stop(agent)
        stop(col)
        server.stop()


def per_hop(base: Path, n: int, cri: bool) -> tuple[float, float, float]:
    tmp = base / "hops"
    tmp.mkdir()
    write_workload(tmp, n, cri)
    server = NatsServer(tmp / "nats")
    wal = str(tmp / "agent" / "wal")
    agent = spawn(agent_cmd(agent_yaml(tmp, server.url, cri)), tmp / "agent.log")
    try:
        t_read = wait(lambda: os.path.isdir(wal) and inspect(wal).records >= n, every=0.2)
        server.start()
        t_ship = wait(lambda: inspect(wal).records == 0, every=0.2)
    finally:
        stop(agent)
    col = spawn([sys.executable, "-m", "kubetrail", "collector", "--config", collector_yaml(tmp, server.url)],
                tmp / "collector.log")
    try:
        t_store = wait(lambda: stored(tmp / "store") >= n, every=0.2)
    finally:
        stop(col)
        server.stop()
    return t_read, t_ship, t_store


def cat_baseline(base: Path, n: int, cri: bool) -> float:
    tmp = base / "cat"
    tmp.mkdir()
    files, _ = write_workload(tmp, n, cri)
    t = time.perf_counter()
    with open(os.devnull, "wb") as out:
        subprocess.run(["cat", *map(str, files)], stdout=out, check=True)
    return time.perf_counter() - t


def syslog_ng(base: Path, n: int, cri: bool) -> float | None:
    binary = shutil.which("syslog-ng") or ("/usr/sbin/syslog-ng" if os.path.exists("/usr/sbin/syslog-ng") else None)
    if binary is None:
        print("syslog-ng: not installed (apt-get install syslog-ng-core): comparison skipped")
        return None
    tmp = base / "sng"
    tmp.mkdir()
    files, _ = write_workload(tmp, n, cri)
    port = free_port()
    received = [0]
    ready = threading.Event()

    async def serve() -> None:
        async def handle(reader: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
            while chunk := await reader.read(1 << 16):
                received[0] += chunk.count(b"\n")

        srv = await asyncio.start_server(handle, "127.0.0.1", port)
        ready.set()
        async with srv:
            while received[0] >= 0:
                await asyncio.sleep(0.5)

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
    ready.wait(10)
    srcs = "\n".join(f'  file("{f}" follow-freq(0.1) flags(no-parse) log-fetch-limit(1000) log-iw-size(10000));'
                     for f in files)
    conf = tmp / "sng.conf"
    conf.write_text(f"""@version: 3.38
options {{ stats-freq(0); }};
source s_files {{
{srcs}
}};
destination d_tcp {{
  network("127.0.0.1" port({port}) transport("tcp") template("$MSG\\n")
          disk-buffer(reliable(yes) dir("{tmp}") disk-buf-size(1073741824) mem-buf-size(16777216)));
}};
log {{ source(s_files); destination(d_tcp); }};
""")
    proc = subprocess.Popen([binary, "-F", "-f", str(conf), "-R", str(tmp / "persist"), "-p", str(tmp / "pid"),
                             "-c", str(tmp / "ctl"), "--no-caps"], stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "sng.log", "wb"))  # noqa: SIM115
    try:
        took = wait(lambda: received[0] >= n or proc.poll() is not None, secs=600, every=0.05)
        if received[0] < n:
            print(f"syslog-ng: exited early ({received[0]} of {n} lines); see {tmp}/sng.log")
            return None
        return took
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def peak_rss_with_backlog(base: Path, mib: int) -> tuple[float, int, float]:
    """Fill a WAL with ``mib`` MiB directly, then time an agent draining it to NATS; its VmHWM."""
    tmp = base / "rss"
    (tmp / "pods").mkdir(parents=True)
    (tmp / "audit.log").touch()
    wal_dir = tmp / "agent" / "wal"
    wal = Wal(str(wal_dir), 8 << 30)
    seal = Seal()
    src = "bench/cri-logs:/var/log/pods"
    i = 0
    while wal.bytes() < mib << 20:
        recs = make_records(2000, start=i, source=src, body_bytes=200)
        seal.commit(src, seal.seal(src, recs))
        wal.append(src, recs, {})
        i += 2000
    wal.close()
    server = NatsServer(tmp / "nats").start()
    agent = spawn(agent_cmd(agent_yaml(tmp, server.url, have_cri())), tmp / "agent.log")
    peak = 0
    t = time.perf_counter()
    try:
        while True:
            peak = max(peak, _hwm_kib(agent.pid))
            if inspect(str(wal_dir)).records == 0:
                break
            time.sleep(0.5)
        took = time.perf_counter() - t
        peak = max(peak, _hwm_kib(agent.pid))
    finally:
        stop(agent)
        server.stop()
    return peak / 1024, i, took


def _hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--backlog-mib", type=int, default=1024)
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--skip-syslog-ng", action="store_true")
    ap.add_argument("--dir", default="/var/tmp", help="where to work (a disk, not tmpfs)")
    args = ap.parse_args()
    cri = have_cri()
    base = Path(tempfile.mkdtemp(prefix="kt-bench-transport-", dir=args.dir))
    n = args.lines
    try:
        _, size = write_workload(base, n, cri)
        kind = "CRI lines (cri_logs)" if cri else "audit events (audit_file; cri_logs not built)"
        print(f"{n:,} {kind}, {size / n:.0f} B each, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
        t_cat = cat_baseline(base, n, cri)
        t_e2e = end_to_end(base, n, cri)
        print(f"end to end (files -> agent -> WAL -> NATS -> collector -> store): {n / t_e2e:10,.0f} lines/s "
              f"({t_e2e:.1f}s)")
        t_read, t_ship, t_store = per_hop(base, n, cri)
        print(f"  hop files -> WAL (fsync'd, broker down):    {n / t_read:10,.0f} lines/s")
        print(f"  hop WAL -> NATS JetStream (acknowledged):   {n / t_ship:10,.0f} lines/s")
        print(f"  hop NATS -> collector -> store (committed): {n / t_store:10,.0f} lines/s")
        print(f"cat of the same files:                        {n / t_cat:10,.0f} lines/s "
              f"(kubetrail end to end = {t_cat / t_e2e:.3f} x cat)")
        if not args.skip_syslog_ng:
            t_sng = syslog_ng(base, n, cri)
            if t_sng:
                print(f"syslog-ng, reliable disk-buffer -> TCP:      {n / t_sng:10,.0f} lines/s "
                      f"(kubetrail end to end = {t_sng / t_e2e:.2f} x syslog-ng; syslog-ng does not seal, "
                      "index or store)")
        if not args.skip_rss:
            mib, records, took = peak_rss_with_backlog(base, args.backlog_mib)
            aim = "within" if mib < 100 else "MISSES"
            print(f"agent peak RSS draining a {args.backlog_mib} MiB WAL ({records:,} records, {took:.0f}s): "
                  f"{mib:.0f} MiB ({aim} the 100 MiB aim)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
