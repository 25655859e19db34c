"""The agent's shipping loop: WAL frames -> broker sink -> WAL ack (trim), with backoff.

A frame leaves the WAL only after the sink returned, i.e. after the broker acknowledged it; a
failed send releases the frames, which are read and sent again (same message ids, so the broker
drops what it already had). The loop never gives up while the agent runs: a broker that is down
makes the WAL grow (and, when it is full, the buffer's ``when_full`` policy decide).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Protocol

from kubetrail.buffer import Wal
from kubetrail.errors import KubetrailError
from kubetrail.record import Record

MAX_BACKOFF_SECS = 5.0


class BrokerSink(Protocol):
    async def start(self) -> None: ...

    async def send(self, batches: list[list[Record]]) -> None: ...

    async def close(self) -> None: ...


class Forwarder:
    """Counters are read by ``kubetrail agent``'s summary line (and later the metrics endpoint)."""

    def __init__(self, wal: Wal, sink: BrokerSink, stop: threading.Event, log: Callable[[str], None],
                 drain_secs: float = 5.0, read_bytes: int = 4 << 20) -> None:
        self.wal = wal
        self.sink = sink
        self.stop = stop
        self.log = log
        self.drain_secs = drain_secs
        self.read_bytes = read_bytes
        self.sent_frames = 0
        self.sent_records = 0
        self.failures = 0
        self._connected = False

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        delay = 0.2
        drain_until: float | None = None
        try:
            while True:
                if self.stop.is_set():
                    drain_until = drain_until or time.monotonic() + self.drain_secs
                    if time.monotonic() > drain_until:
                        return
                if not self._connected and not await self._connect():
                    if drain_until is not None:
                        return
                    await self._sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF_SECS)
                    continue
                entries = self.wal.read(max_bytes=self.read_bytes)
                if not entries:
                    if drain_until is not None:
                        return
                    await asyncio.get_running_loop().run_in_executor(None, self.wal.wait, 0.2)
                    continue
                try:
                    await self.sink.send([e.records for e in entries if e.records])
                except KubetrailError as exc:
                    self.wal.release(entries)
                    self.failures += 1
                    if self.failures == 1 or self.failures % 20 == 0:
                        self.log(f"sink: {exc}; {self.wal.records()} record(s) wait in the WAL, retrying")
                    await self._sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF_SECS)
                    continue
                except BaseException:
                    self.wal.release(entries)
                    raise
                self.wal.ack(entries)
                self.sent_frames += len(entries)
                self.sent_records += sum(len(e.records) for e in entries)
                delay = 0.2
        finally:
            await self.sink.close()

    async def _connect(self) -> bool:
        try:
            await self.sink.start()
        except KubetrailError as exc:
            self.failures += 1
            if self.failures == 1 or self.failures % 20 == 0:
                self.log(f"sink: {exc}; retrying")
            return False
        self._connected = True
        return True

    async def _sleep(self, secs: float) -> None:
        end = time.monotonic() + secs
        while not self.stop.is_set() and time.monotonic() < end:
            await asyncio.sleep(min(0.05, secs))
