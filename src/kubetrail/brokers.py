"""Broker client plumbing shared by the agent's sinks and the collector's sources (NATS, Kafka).

Both sides must connect the same way (quietly, failing fast so the caller's retry loop decides),
and neither may import the other (sources and sinks are siblings), so it lives here.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from typing import Any

from kubetrail.errors import KubetrailError
from kubetrail.record import Record, encode_batch


def servers(url: str) -> list[str]:
    """``nats://a:4222,nats://b:4222`` -> the server list (a cluster is given as several URLs)."""
    return [u.strip() for u in url.split(",") if u.strip()]


_IMPORT_LOCK = threading.Lock()


def import_nats() -> None:
    """Import nats-py once, under a lock.

    nats-py's modules import each other in a cycle (``nats.aio.client`` -> ``nats.js`` ->
    ``nats.js.api`` -> ...); two threads importing it for the first time at once (an agent's
    forwarder and a collector in one process) make CPython raise ``_DeadlockError`` in one of
    them. After the first complete import every later ``import`` is a dictionary lookup.
    """
    with _IMPORT_LOCK:
        import nats.aio.client  # noqa: F401
        import nats.errors  # noqa: F401
        import nats.js.api  # noqa: F401
        import nats.js.errors  # noqa: F401


async def connect_nats(urls: str, timeout: float, name: str, error: type[KubetrailError]) -> Any:
    """A NATS connection that reconnects forever once up, logs nothing itself (nats-py prints
    tracebacks on every refused reconnect otherwise), and raises ``error`` when it cannot connect
    within ``timeout`` (nats-py alone would retry the first connection forever)."""
    import asyncio

    import_nats()
    from nats.aio.client import Client

    async def quiet(_exc: Exception) -> None:
        return None

    nc = Client()
    try:
        await asyncio.wait_for(nc.connect(servers(urls), name=name, connect_timeout=timeout,
                                          max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                          allow_reconnect=True, error_cb=quiet), timeout * 2)
    except Exception as exc:  # noqa: BLE001 - nats-py raises many unrelated types for "cannot connect"
        with contextlib.suppress(Exception):  # closing what never opened
            await nc.close()
        raise error(f"cannot connect to NATS at {urls}: {str(exc) or type(exc).__name__}") from exc
    return nc


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, ``>`` the rest (one or more tokens)."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def message_id(records: list[Record]) -> str:
    """The identity of a message's content (``Nats-Msg-Id``)."""
    if len(records) == 1:
        return records[0].key
    return hashlib.sha256("\n".join(r.key for r in records).encode()).hexdigest()


def split(records: list[Record], max_bytes: int) -> list[tuple[list[Record], bytes]]:
    """Messages of whole records, each encoded under ``max_bytes`` where a single record allows."""
    data = encode_batch(records)
    if len(data) <= max_bytes or len(records) == 1:
        return [(records, data)]
    mid = len(records) // 2
    return split(records[:mid], max_bytes) + split(records[mid:], max_bytes)
