"""Broker client plumbing shared by the agent's sinks and the collector's sources (NATS, Kafka).

Both sides must connect the same way (quietly, failing fast so the caller's retry loop decides),
and neither may import the other (sources and sinks are siblings), so it lives here.
"""

from __future__ import annotations

from typing import Any

from kubetrail.errors import KubetrailError


def servers(url: str) -> list[str]:
    """``nats://a:4222,nats://b:4222`` -> the server list (a cluster is given as several URLs)."""
    return [u.strip() for u in url.split(",") if u.strip()]


async def connect_nats(urls: str, timeout: float, name: str, error: type[KubetrailError]) -> Any:
    """A NATS connection that reconnects forever once up, logs nothing itself (nats-py prints
    tracebacks on every refused reconnect otherwise), and raises ``error`` when it cannot connect."""
    import nats

    async def quiet(_exc: Exception) -> None:
        return None

    try:
        return await nats.connect(servers(urls), name=name, connect_timeout=timeout, max_reconnect_attempts=-1,
                                  reconnect_time_wait=0.5, allow_reconnect=True, error_cb=quiet)
    except Exception as exc:  # noqa: BLE001 - nats-py raises many unrelated types for "cannot connect"
        raise error(f"cannot connect to NATS at {urls}: {exc or type(exc).__name__}") from exc


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, ``>`` the rest (one or more tokens)."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)
