"""The collector's sources: sealed batches read back from the broker (``source:`` in its config).

A ``Delivery`` is one broker message: its records and how to acknowledge it. The collector stores
the records of a fetch in one transaction and only then calls ``ack``; a crash in between means the
broker delivers them again, and the store refuses keys it holds (exactly-once into the trail).

Implementations: ``sources/nats.py`` (JetStream durable pull consumer), ``sources/kafka.py``
(consumer group, offsets committed by hand); ``config.BrokerSourceConfig`` is their union.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec

from kubetrail.errors import KubetrailError
from kubetrail.record import Record


class Delivery(msgspec.Struct):
    records: list[Record]
    ack: Callable[[], Awaitable[None]]


class BrokerSource(Protocol):
    async def start(self) -> None: ...

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]: ...

    async def close(self) -> None: ...



async def consume(source: BrokerSource, store: Callable[[list[Record]], list[Record]],
                  after: Callable[[list[Record]], None], stop: threading.Event, log: Callable[[str], None],
                  tick: Callable[[], None] | None = None, tick_secs: float = 60.0, max_messages: int = 64) -> None:
    """Fetch, ``store`` (one commit), ack, then ``after`` (detection etc.), until ``stop`` is set.

    ``store`` returns the records that were new; a failure there leaves the messages unacknowledged
    (redelivered after the broker's ack wait, or to another collector)."""
    delay = 0.2
    next_tick = time.monotonic() + tick_secs
    started = False
    try:
        while not stop.is_set():
            if tick is not None and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + tick_secs
                _quietly(tick, log, "timer work")
            if not started:
                try:
                    await source.start()
                    started = True
                    delay = 0.2
                except KubetrailError as exc:
                    log(f"collector: {exc}; retrying in {delay:.1f}s")
                    await _sleep(stop, delay)
                    delay = min(delay * 2, 5.0)
                    continue
            try:
                deliveries = await source.fetch(max_messages, timeout=0.5)
            except KubetrailError as exc:
                log(f"collector: {exc}; retrying in {delay:.1f}s")
                await _sleep(stop, delay)
                delay = min(delay * 2, 5.0)
                continue
            if not deliveries:
                continue
            records = [r for d in deliveries for r in d.records]
            stored = store(records)  # raises: nothing acknowledged, the broker redelivers
            for d in deliveries:
                await d.ack()
            if stored:
                _quietly(lambda s=stored: after(s), log, "after-commit work")  # type: ignore[misc]
    finally:
        await source.close()


def _quietly(call: Callable[[], None], log: Callable[[str], None], what: str) -> None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - stored is stored: say it, keep collecting
        log(f"collector: {what} failed: {exc}")


async def _sleep(stop: threading.Event, secs: float) -> None:
    end = time.monotonic() + secs
    while not stop.is_set() and time.monotonic() < end:
        await asyncio.sleep(0.05)
