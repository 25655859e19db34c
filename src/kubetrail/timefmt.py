"""Time in and out of the CLI: RFC 3339 text for people, ns since the epoch inside."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from kubetrail.errors import InputError

_REL = re.compile(r"^(\d+)(s|m|h|d|w)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def format_ns(ns: int | None) -> str | None:
    if ns is None:
        return None
    secs, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z" if frac else f"{base}Z"


def parse_when(text: str, now_ns: int | None = None) -> int:
    """``2024-05-01T10:00:00Z``, ``2024-05-01``, or a duration ago such as ``90m``, ``2h``, ``7d``."""
    m = _REL.match(text.strip())
    if m:
        now = time.time_ns() if now_ns is None else now_ns
        when = now - int(m.group(1)) * _UNIT[m.group(2)] * 1_000_000_000
        if when < -(1 << 63):  # SQLite integers are 64-bit
            raise InputError(f"{text!r} is out of range (further back than the year 1677)")
        return when
    value = text.strip().replace("z", "Z")
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"{text!r} is neither an RFC 3339 time nor a duration like 2h or 7d") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000
