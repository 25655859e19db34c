"""What a compiled condition sees: one event (and its record, when there is one) plus a small cache.

A field extractor returns ``None`` when the field is *missing* (every comparison on it is false, as
in Falco), a ``str`` for a scalar field, or a non-empty ``list[str]`` for a list field.
"""

from __future__ import annotations

import re
from calendar import timegm
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Extracted = str | list[str] | None
Extractor = Callable[["EventContext", str | None], Extracted]
ArgKind = Literal["none", "index", "key", "optkey"]

MISSING: Any = object()
_TS = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|z|[+-]\d\d:\d\d)$")


def parse_rfc3339_ns(text: Any) -> int | None:
    """RFC 3339 (nano) timestamp -> ns since the epoch, or None."""
    if not isinstance(text, str):
        return None
    m = _TS.match(text)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    secs = timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    if tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return secs * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def get(obj: Any, *path: str) -> Any:
    """``obj[p0][p1]…`` through dicts, or ``MISSING``."""
    for key in path:
        if not isinstance(obj, dict):
            return MISSING
        obj = obj.get(key, MISSING)
        if obj is MISSING:
            return MISSING
    return obj


class EventContext:
    """One event under evaluation. ``record`` is a ``kubetrail.record.Record`` or None."""

    __slots__ = ("ev", "record", "cache", "audit")

    def __init__(self, ev: dict[str, Any], record: Any = None) -> None:
        self.ev = ev
        self.record = record
        self.cache: dict[str, Any] = {}
        # Falco: every ka.* field is missing when the event has no auditID.
        self.audit = "auditID" in ev

    @property
    def time_ns(self) -> int | None:
        if "time" not in self.cache:
            t = parse_rfc3339_ns(self.ev.get("stageTimestamp"))
            if t is None and self.record is not None:
                t = getattr(self.record, "time", None)
            self.cache["time"] = t
        return self.cache["time"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of the catalog. ``extract_falco`` replaces ``extract`` under ``compat: falco``."""

    name: str
    desc: str
    extract: Extractor
    is_list: bool = False
    arg: ArgKind = "none"
    extract_falco: Extractor | None = None
    deprecated: bool = False

    def extractor(self, compat: str) -> Extractor:
        if compat == "falco" and self.extract_falco is not None:
            return self.extract_falco
        return self.extract


def check_index(arg: str) -> bool:
    """Index arguments are decimal without leading zeros."""
    return arg.isdigit() and (arg == "0" or arg[0] != "0")
