"""The collector's sources: sealed batches read back from the broker (``source:`` in its config).

A ``Delivery`` is one broker message: its records and how to acknowledge it. The collector stores
the records of a fetch in one transaction and only then calls ``ack``; a crash in between means the
broker delivers them again, and the store refuses keys it holds (exactly-once into the trail).

Implementations: ``sources/nats.py`` (JetStream durable pull consumer), ``sources/kafka.py``
(consumer group, offsets committed by hand); ``config.BrokerSourceConfig`` is their union.
"""

from __future__ import annotations

# asyncio is imported in the coroutines that use it (they run under a loop, where it is loaded): the
# config reaches this module (through sources/kafka.py, nats.py) in every command, and asyncio is ~20 ms
# of start-up `ingest` never uses.
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from kubetrail import telemetry
from kubetrail.errors import KubetrailError
from kubetrail.record import Record

RESTART_AFTER = 3  # consecutive failed fetches before the source is closed and started again


class Delivery(msgspec.Struct):
    """One broker message: its records and the broker's handle to acknowledge it by."""

    records: list[Record]
    handle: Any


class BrokerSource(Protocol):
    async def start(self) -> None: ...

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]: ...

    async def ack(self, deliveries: list[Delivery]) -> None:
        """The records of these deliveries are committed to the store: the broker may forget them."""

    async def lag(self) -> tuple[str, int] | None:
        """(stream or topic, messages not yet acknowledged by this consumer), when the broker says."""

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
    failures = 0
    try:
        while not stop.is_set():
            if tick is not None and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + tick_secs
                _quietly(tick, log, "timer work")
                if started:
                    await _report_lag(source)
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
                failures += 1
                log(f"collector: {exc}; retrying in {delay:.1f}s")
                if failures >= RESTART_AFTER:  # start over: a new connection and subscription
                    await source.close()
                    started, failures = False, 0
                await _sleep(stop, delay)
                delay = min(delay * 2, 5.0)
                continue
            failures = 0
            if not deliveries:
                continue
            records = [r for d in deliveries for r in d.records]
            stored = store(records)  # raises: nothing acknowledged, the broker redelivers
            try:
                await source.ack(deliveries)
            except KubetrailError as exc:  # stored: a redelivery is refused by the store's key check
                log(f"collector: {exc}")
            if stored:
                _quietly(lambda s=stored: after(s), log, "after-commit work")  # type: ignore[misc]
    finally:
        await source.close()


async def _report_lag(source: BrokerSource) -> None:
    try:
        lag = await source.lag()
    except KubetrailError:
        return
    if lag is not None:
        telemetry.emit(telemetry.BrokerLagMeasured(stream=lag[0], pending=lag[1]))


def _quietly(call: Callable[[], None], log: Callable[[str], None], what: str) -> None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - stored is stored: say it, keep collecting
        log(f"collector: {what} failed: {exc}")


async def _sleep(stop: threading.Event, secs: float) -> None:
    import asyncio

    end = time.monotonic() + secs
    while not stop.is_set() and time.monotonic() < end:
        await asyncio.sleep(0.05)
