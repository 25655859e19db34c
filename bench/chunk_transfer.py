"""What it costs to hand a worker's result to the writer: a ``multiprocessing`` pipe vs a shared-memory slot.

    .venv/bin/python bench/chunk_transfer.py [--mb 1.6] [--chunks 200] [--events 365]

A forked child sends ``--chunks`` results of ``--mb`` MB each (the size of a prepared 1 MiB chunk of
RequestResponse events, ~365 of them) to this process, once through a pipe (``Connection.send``:
pickled, written in 64 KiB pieces, read and unpickled — what ``ProcessPoolExecutor`` does with a task's
result) and once through ``kubetrail.chunk_slots`` (one ``pwrite`` into a memfd, one ``pread`` back; only
the length crosses the pipe, and an acknowledgement back, as the pool's slot is reused only once read). Prints the CPU µs per chunk on each side and per event (issue 18,
bench/RESULTS.md "Eighth session").
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from multiprocessing.connection import Connection

from kubetrail import chunk_slots


def _child(conn: Connection, size: int, chunks: int, slot: int | None) -> None:
    payload = os.urandom(size)
    t = time.process_time()
    for _ in range(chunks):
        conn.send(chunk_slots.send(payload, slot) if slot is not None else payload)
        if slot is not None:
            conn.recv()  # the writer has read it: the slot is free again
    conn.send(time.process_time() - t)


def measure(size: int, chunks: int, slot: int | None) -> tuple[float, float]:
    """(send, receive) CPU seconds per chunk."""
    ctx = multiprocessing.get_context("fork")
    mine, theirs = ctx.Pipe()
    child = ctx.Process(target=_child, args=(theirs, size, chunks, slot))
    child.start()
    t = time.process_time()
    for _ in range(chunks):
        got = mine.recv()
        data = chunk_slots.receive(got, slot)
        assert len(data) == size
        if slot is not None:
            mine.send(True)
    received = time.process_time() - t
    sent = mine.recv()
    child.join()
    return sent / chunks, received / chunks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=1.6, help="MB per result")
    ap.add_argument("--chunks", type=int, default=200)
    ap.add_argument("--events", type=int, default=365, help="events per chunk, for the per-event figure")
    a = ap.parse_args()
    size = int(a.mb * 1e6)
    slots = chunk_slots.Slots.make(1)
    print(f"{a.chunks} results of {size / 1e6:.2f} MB ({a.events} events each), CPU µs")
    for name, slot in (("pipe", None), ("shared-memory slot", slots.fds[0] if slots else None)):
        if name != "pipe" and slot is None:
            print(f"  {name:<20} unavailable here (no memfd_create)")
            continue
        sent, received = measure(size, a.chunks, slot)
        per_event = (sent + received) / a.events * 1e6
        print(f"  {name:<20} send {sent * 1e6:7.0f}  receive {received * 1e6:7.0f}  per chunk;  {per_event:5.2f} per event")
    if slots is not None:
        slots.close()


if __name__ == "__main__":
    main()
