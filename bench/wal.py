"""The node WAL's design choice, measured: segment files (what kubetrail uses) vs SQLite in WAL mode.

    .venv/bin/python bench/wal.py [--records 100000] [--dir /var/tmp]

Each variant appends the same sealed records in batches, durably (fsync per batch), with the source
position in the same write, then reads everything back and acknowledges it:

* ``segments``: ``kubetrail.buffer.Wal`` (CRC32C frames, ``fdatasync`` per append, delete on ack);
* ``sqlite``: one table of records and one of positions, one ``synchronous=FULL`` transaction per
  batch in WAL journal mode; read back in order and deleted (the same work, the other design);
* ``raw``: ``os.write`` of the same bytes + ``fdatasync``: the floor either design pays.

Prints records/s per batch size and each design's ratio to ``raw``, plus the bytes on disk.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sqlite3
import tempfile
import time

from kubetrail.buffer import Wal
from kubetrail.record import decode_records, encode_records
from kubetrail.stages.seal import Seal
from kubetrail.testing import make_records

SRC = "bench/audit-file:/var/log/audit.log"


def batches(n: int, size: int) -> list[list]:
    records = make_records(n, source=SRC, body_bytes=150)
    seal = Seal()
    out = []
    for i in range(0, n, size):
        chunk = records[i:i + size]
        seal.commit(SRC, seal.seal(SRC, chunk))
        out.append(chunk)
    return out


def run_segments(path: str, work: list[list]) -> tuple[float, float, int]:
    wal = Wal(path, 8 << 30)
    t = time.perf_counter()
    for i, chunk in enumerate(work):
        wal.append(SRC, chunk, {SRC: str(i)})
    appended = time.perf_counter() - t
    size = wal.bytes()
    t = time.perf_counter()
    while entries := wal.read():
        wal.ack(entries)
    drained = time.perf_counter() - t
    wal.close()
    return appended, drained, size


def run_sqlite(path: str, work: list[list]) -> tuple[float, float, int]:
    os.makedirs(path, exist_ok=True)
    db = os.path.join(path, "wal.db")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE records (id INTEGER PRIMARY KEY, source TEXT, seq INTEGER, payload BLOB)")
    conn.execute("CREATE TABLE positions (source TEXT PRIMARY KEY, position TEXT)")
    t = time.perf_counter()
    for i, chunk in enumerate(work):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO records (source, seq, payload) VALUES (?, ?, ?)",
                         [(SRC, r.seq, encode_records([r])) for r in chunk])
        conn.execute("INSERT INTO positions VALUES (?, ?) ON CONFLICT (source) DO UPDATE SET position = excluded.position",
                     (SRC, str(i)))
        conn.execute("COMMIT")
    appended = time.perf_counter() - t
    size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
    t = time.perf_counter()
    last = 0
    while True:
        rows = conn.execute("SELECT id, payload FROM records WHERE id > ? ORDER BY id LIMIT 2000", (last,)).fetchall()
        if not rows:
            break
        last = rows[-1][0]
        for _, payload in rows:  # the records are decoded, as the WAL's reader does
            decode_records(payload)
        conn.execute("BEGIN")
        conn.execute("DELETE FROM records WHERE id <= ?", (last,))
        conn.execute("COMMIT")
    drained = time.perf_counter() - t
    conn.close()
    return appended, drained, size


def run_raw(path: str, work: list[list]) -> tuple[float, float, int]:
    os.makedirs(path, exist_ok=True)
    blobs = [encode_records(chunk) for chunk in work]
    fd = os.open(os.path.join(path, "raw"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    t = time.perf_counter()
    for b in blobs:
        os.write(fd, b)
        os.fdatasync(fd)
    appended = time.perf_counter() - t
    os.close(fd)
    return appended, 0.0, sum(len(b) for b in blobs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="kt-bench-wal-", dir=args.dir)
    try:
        print(f"{args.records} records of ~650 B (MessagePack), fsync per batch, in {root}")
        print(f"{'batch':>6} {'design':>9} {'append rec/s':>13} {'vs raw':>7} {'drain rec/s':>12} {'MiB on disk':>12}")
        for size in (50, 500):
            work = batches(args.records, size)
            gc.freeze()  # the input records are not garbage: keep the collector from walking them
            results = {}
            for name, fn in (("raw", run_raw), ("segments", run_segments), ("sqlite", run_sqlite)):
                results[name] = fn(os.path.join(root, f"{name}-{size}"), work)
            raw_rate = args.records / results["raw"][0]
            for name, (appended, drained, nbytes) in results.items():
                rate = args.records / appended
                drain = f"{args.records / drained:12,.0f}" if drained else f"{'-':>12}"
                print(f"{size:>6} {name:>9} {rate:13,.0f} {rate / raw_rate:7.2f} {drain} {nbytes / 2**20:12.1f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
