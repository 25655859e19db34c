"""Any other line-oriented node log (``/var/log/auth.log``, ``/var/log/syslog``, kube-proxy's log).

The same tailer as the audit log (``_tail.Tailer``: rotation, truncation, restarts, position in the
store's transaction). A line's time is the RFC 3339 or syslog (``May  1 10:00:00``) stamp it starts
with, else the time it was read. Its key is the file identity, offset and content (``_logkey``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

import msgspec

from kubetrail.record import LogMeta, Record, SourceRef
from kubetrail.sources._logkey import log_key
from kubetrail.sources._tail import Position, Tailer
from kubetrail.stages.extract import parse_time_ns
from kubetrail.stages.redact_lines import RedactLines

RecordsCommit = Callable[[list[Record], dict[str, str]], object]
_MONTHS = {m: i + 1 for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                            "Nov", "Dec"))}


class TextfileConfig(msgspec.Struct, tag="textfile", tag_field="type", frozen=True, kw_only=True,
                     forbid_unknown_fields=True):
    path: str
    unit: str = ""
    node: str = ""
    read_from: Literal["beginning", "end"] = "beginning"
    max_batch_bytes: int = 1_048_576
    poll_ms: int = 250

    def problems(self) -> list[tuple[str, str]]:
        out = []
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            out.append(("path", f"no such directory {parent!r}"))
        if self.poll_ms <= 0 or self.max_batch_bytes <= 0:
            out.append(("poll_ms", "poll_ms and max_batch_bytes must be greater than 0"))
        return out


def line_time(text: str, now_ns: int) -> int | None:
    """The time a log line starts with: RFC 3339, or syslog's ``Mmm dd hh:mm:ss`` (this year)."""
    if len(text) >= 19 and text[4:5] == "-" and text[10:11] in ("T", " "):
        stamp = text.split(" ", 2 if text[10:11] == " " else 1)
        cand = stamp[0] if text[10:11] == "T" else f"{stamp[0]}T{stamp[1] if len(stamp) > 1 else ''}"
        t = parse_time_ns(cand)
        if t is not None:
            return t
    month = _MONTHS.get(text[:3])
    if month and len(text) >= 15 and text[3] == " ":
        try:
            day, hms = int(text[4:6]), text[7:15]
            h, m, s = (int(x) for x in hms.split(":"))
            year = datetime.fromtimestamp(now_ns / 1e9, UTC).year
            return int(datetime(year, month, day, h, m, s, tzinfo=UTC).timestamp()) * 1_000_000_000
        except ValueError:
            return None
    return None


class TextfileSource:
    def __init__(self, config: TextfileConfig, cluster: str = "", redact: RedactLines | None = None) -> None:
        self.config = config
        self.redact = redact or RedactLines()
        self.position_key = f"textfile:{config.path}"
        self.unit = config.unit or os.path.basename(config.path)
        self.source = SourceRef(cluster=cluster, node=config.node, stream=f"textfile:{config.path}")

    def run(self, commit: RecordsCommit, load_position: Callable[[str], str | None], stop: threading.Event) -> None:
        start = Position.loads(load_position(self.position_key))
        tailer = Tailer(self.config.path, start, self.config.max_batch_bytes,
                        from_end=self.config.read_from == "end", newline_only=True)
        try:
            while not stop.is_set():
                idle = True
                for lines, pos in tailer.poll():
                    idle = False
                    commit(self.records(lines, pos), {self.position_key: pos.dumps()})
                if idle:
                    stop.wait(self.config.poll_ms / 1000)
        finally:
            tailer.close()

    def records(self, lines: list[bytes], pos: Position) -> list[Record]:
        out = []
        offset = pos.start
        now = time.time_ns()
        origin = f"file:{self.config.node}:{self.config.path}:{pos.dev}:{pos.ino}"
        for raw in lines:
            text, found = self.redact(raw.decode("utf-8", "replace").rstrip("\r"))
            body = text.encode()
            stamp = line_time(text, now)
            out.append(Record(kind="node", key=log_key("node", origin, offset, "", None, body),
                              time=stamp if stamp is not None else now, source=self.source, body=body,
                              meta=LogMeta(node=self.config.node, unit=self.unit), format="text",
                              redactions=found))
            offset += len(raw) + 1
        return out
