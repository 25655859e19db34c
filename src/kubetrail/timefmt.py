"""Time in and out of the CLI: RFC 3339 text for people, ns since the epoch inside."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

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


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_FRACTION_NS = tuple(10 ** (9 - n) for n in range(10))  # ns per unit of an n-digit fraction


@lru_cache(maxsize=4096)
def _epoch_seconds(prefix: str) -> int:
    return int(datetime.fromisoformat(prefix + "+00:00").timestamp())


def parse_rfc3339_ns(value: Any) -> int | None:
    """RFC 3339 with up to nanosecond precision → ns since the epoch (None if unusable)."""
    if not isinstance(value, str) or len(value) < 19:
        return None
    try:
        secs = _epoch_seconds(value[:19])
    except ValueError:
        return None
    if value[-1] == "Z" and value[19:20] == ".":  # the apiserver's own form (hot: twice per event)
        frac = value[20:-1]
        if 0 < len(frac) <= 9 and frac.isdecimal():  # isdecimal: what int() reads ("²" is a digit, not decimal)
            ns = secs * 1_000_000_000 + int(frac) * _FRACTION_NS[len(frac)]
            return ns if _INT64_MIN <= ns <= _INT64_MAX else None
    return _parse_rest(value, secs)


def _parse_rest(value: str, secs: int) -> int | None:
    """Every form after the seconds (fraction of any length, Z/z or a numeric offset): the general
    reading, which the apiserver-form short path above must agree with."""
    rest = value[19:]
    frac = 0
    if rest.startswith("."):
        digits = ""
        for ch in rest[1:]:
            if not ch.isdecimal():
                break
            digits += ch
        rest = rest[1 + len(digits):]
        frac = int((digits + "000000000")[:9]) if digits else 0
    offset = 0
    if rest and rest not in ("Z", "z"):
        try:
            sign = -1 if rest[0] == "-" else 1
            hh, mm = rest[1:].split(":") if ":" in rest else (rest[1:3], rest[3:5])
            if rest[0] not in "+-" or len(hh) != 2 or len(mm) != 2 or int(hh) > 23 or int(mm) > 59:
                return None  # RFC 3339 offsets are -23:59 … +23:59
            offset = sign * (int(hh) * 3600 + int(mm) * 60)
        except ValueError:
            return None
    ns = (secs - offset) * 1_000_000_000 + frac
    return ns if _INT64_MIN <= ns <= _INT64_MAX else None  # 1677 … 2262: what a 64-bit column holds
