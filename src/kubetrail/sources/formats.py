"""Decode every way a cluster delivers audit events into plain ``audit.k8s.io`` Event dicts.

Detection is per line (or per document, for a file that is one JSON value spread over lines):

* raw ``audit.k8s.io/v1``/``v1beta1`` Event (``kind``/``apiVersion`` may be missing)
* ``EventList`` and JSON arrays (webhook batches)
* container-runtime wrapping of ``--audit-log-path=-``: CRI ``<ts> stdout F {json}`` and
  Docker json-file ``{"log": "{json}\\n", ...}``
* GKE Cloud Logging ``LogEntry`` with an ``AuditLog`` protoPayload (lossy: see ``cloud_gke``)
* EKS CloudWatch: plain ``message`` events and the gzip+base64 subscription envelope
* AKS diagnostic records (``properties.log`` string or object; ``{"records": [...]}`` batches)

Anything else becomes a ``Rejected`` with its position and reason; decoding never raises for bad
input, because one bad line must not stop an ingest of millions.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import re
import sys
import zlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any, BinaryIO

import orjson
import yaml

from kubetrail.errors import InputError
from kubetrail.record import Decoded, Rejected
from kubetrail.sources.cloud_gke import gke_to_event, shown

MAX_LINE_BYTES = 64 * 1024 * 1024
# A base64+gzip CloudWatch blob may expand to at most this much: a few hundred KiB of input must
# not become gigabytes in memory (a "gzip bomb"). Real subscription records are far below 1 MiB.
MAX_GZIP_BYTES = 256 * 1024 * 1024
# Arrays, EventLists and envelopes nested inside each other: real deliveries use two or three
# levels; a line of a thousand nested arrays must be a reject, not a RecursionError.
MAX_NESTING = 8


Item = Decoded | Rejected

_EVENT_KEYS = ("auditID", "stage", "verb", "requestURI")


def check_event(obj: Any) -> str | None:
    """Why ``obj`` is not a usable audit Event, or None. Type confusion is caught here."""
    if not isinstance(obj, dict):
        return f"not a JSON object ({type(obj).__name__})"
    kind = obj.get("kind")
    if kind is not None and kind != "Event":
        return f"kind is {shown(kind)}, not 'Event'"
    api = obj.get("apiVersion")
    if api is not None and api not in ("audit.k8s.io/v1", "audit.k8s.io/v1beta1", "audit.k8s.io/v1alpha1"):
        return f"apiVersion {shown(api)} is not audit.k8s.io"
    if not all(k in obj for k in ("auditID", "verb")):
        return "missing auditID or verb"
    for field, typ in (("auditID", str), ("verb", str), ("stage", str), ("requestURI", str),
                       ("user", dict), ("objectRef", dict), ("responseStatus", dict),
                       ("sourceIPs", list), ("annotations", dict), ("userAgent", str),
                       ("stageTimestamp", str), ("requestReceivedTimestamp", str), ("level", str)):
        if field in obj and obj[field] is not None and not isinstance(obj[field], typ):
            return f"{field} has type {type(obj[field]).__name__}, expected {typ.__name__}"
    user = obj.get("user") or {}
    if "username" in user and not isinstance(user["username"], str):
        return "user.username is not a string"
    if "groups" in user and user["groups"] is not None and not isinstance(user["groups"], list):
        return "user.groups is not a list"
    status = obj.get("responseStatus") or {}
    if "code" in status and not isinstance(status["code"], int | None):
        if isinstance(status["code"], str) and status["code"].isdigit():
            status["code"] = int(status["code"])
        else:
            return "responseStatus.code is not an integer"
    return None


def _error_text(exc: BaseException) -> str:
    """A decoding error for a reject reason. gzip quotes the bytes it found instead of its magic
    number, so that one is named by its type: a reason never carries input bytes."""
    return "bad gzip data" if isinstance(exc, gzip.BadGzipFile) else str(exc)


def decode_value(obj: Any, position: str, fmt: str = "", depth: int = 0) -> Iterator[Item]:
    """Decode one parsed JSON value that may hold zero or more events. ``depth`` counts the
    arrays, EventLists and envelopes around ``obj``; beyond ``MAX_NESTING`` the value is a reject."""
    if depth > MAX_NESTING:
        yield Rejected(position, f"nested deeper than {MAX_NESTING} levels of arrays, EventLists or envelopes")
        return
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from decode_value(item, f"{position}[{i}]", fmt or "array", depth + 1)
        return
    if not isinstance(obj, dict):
        yield Rejected(position, f"not a JSON object ({type(obj).__name__})")
        return
    kind = obj.get("kind")
    if kind == "EventList":
        items = obj.get("items")
        if not isinstance(items, list):
            yield Rejected(position, "EventList without an items list")
            return
        for i, item in enumerate(items):
            yield from decode_value(item, f"{position}.items[{i}]", "eventlist", depth + 1)
        return
    if kind is None and "auditID" not in obj:
        inner = _unwrap(obj, position, depth + 1)
        if inner is not None:
            yield from inner
            return
    reason = check_event(obj)
    if reason:
        yield Rejected(position, reason)
        return
    yield Decoded(obj, fmt or "event", position)


def _unwrap(obj: dict[str, Any], position: str, depth: int) -> Iterator[Item] | None:
    """Cloud and runtime envelopes; None when ``obj`` is no envelope we know. ``depth`` already
    counts this envelope."""
    if isinstance(obj.get("log"), str) and ("stream" in obj or "time" in obj):  # Docker json-file
        return _decode_text(obj["log"].rstrip("\n"), position, "docker", depth)
    if "protoPayload" in obj:  # GKE LogEntry
        event, lossy, why = gke_to_event(obj)
        if event is None:
            return iter([Rejected(position, why or "unusable GKE LogEntry")])
        return iter([Decoded(event, "gke", position, lossy)])
    if isinstance(obj.get("records"), list):  # AKS Event Hub batch
        return _chain(_decode_aks(r, f"{position}.records[{i}]", depth) for i, r in enumerate(obj["records"]))
    if isinstance(obj.get("properties"), dict) and "log" in obj["properties"]:  # AKS record
        return _decode_aks(obj, position, depth)
    if obj.get("messageType") in ("DATA_MESSAGE", "CONTROL_MESSAGE"):  # EKS subscription
        return _decode_cwl(obj, position, depth)
    if isinstance(obj.get("awslogs"), dict) and isinstance(obj["awslogs"].get("data"), str):
        return _decode_b64gz(obj["awslogs"]["data"], position, depth)
    if isinstance(obj.get("message"), str) and ("timestamp" in obj or "logStream" in obj or "id" in obj):
        return _decode_text(obj["message"], position, "eks", depth)  # CloudWatch log event
    return None


def _chain(parts: Iterable[Iterator[Item]]) -> Iterator[Item]:
    for p in parts:
        yield from p


def _decode_aks(record: Any, position: str, depth: int) -> Iterator[Item]:
    if not isinstance(record, dict) or not isinstance(record.get("properties"), dict):
        yield Rejected(position, "AKS record without properties")
        return
    log = record["properties"].get("log")
    if isinstance(log, str):
        yield from _decode_text(log, f"{position}.properties.log", "aks", depth)
    elif isinstance(log, dict):
        yield from decode_value(log, f"{position}.properties.log", "aks", depth)
    else:
        yield Rejected(position, "AKS properties.log is neither a JSON string nor an object")


def _decode_cwl(obj: dict[str, Any], position: str, depth: int) -> Iterator[Item]:
    if obj.get("messageType") == "CONTROL_MESSAGE":
        return
    events = obj.get("logEvents")
    if not isinstance(events, list):
        yield Rejected(position, "CloudWatch DATA_MESSAGE without logEvents")
        return
    for i, ev in enumerate(events):
        msg = ev.get("message") if isinstance(ev, dict) else None
        if not isinstance(msg, str):
            yield Rejected(f"{position}.logEvents[{i}]", "CloudWatch log event without a message")
            continue
        yield from _decode_text(msg, f"{position}.logEvents[{i}]", "eks", depth)


def gunzip_bounded(data: bytes, limit: int = MAX_GZIP_BYTES) -> bytes:
    """gzip data (possibly several members) decompressed in bounded steps; ``ValueError`` as soon
    as the output would pass ``limit``, so a bomb never expands further than that."""
    out: list[bytes] = []
    total = 0
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        while True:
            chunk = d.decompress(data, 1 << 20)
            total += len(chunk)
            if total > limit:
                raise GzipTooLarge(f"gzip data expands to more than {limit} bytes")
            out.append(chunk)
            data = d.unconsumed_tail
            if d.eof:
                break
            if not data and not chunk:
                raise EOFError("truncated gzip data")
        data = d.unused_data
    return b"".join(out)


class GzipTooLarge(ValueError):
    """Decompressed data over the limit: refused before it is all in memory."""


def _decode_b64gz(data: str, position: str, depth: int = 0) -> Iterator[Item]:
    try:
        raw = gunzip_bounded(base64.b64decode(data, validate=False))
    except GzipTooLarge as exc:
        yield Rejected(position, f"refused: {exc} (a CloudWatch record is far smaller)")
        return
    except (ValueError, OSError, EOFError, zlib.error) as exc:
        yield Rejected(position, f"not gzip+base64: {_error_text(exc)}")
        return
    yield from _decode_text(raw, position, "eks", depth)


def _decode_text(text: str | bytes, position: str, fmt: str, depth: int = 0) -> Iterator[Item]:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        yield Rejected(position, f"invalid JSON inside {fmt} envelope: {exc}")
        return
    if isinstance(obj, str):
        yield Rejected(position, "double-encoded JSON string")
        return
    yield from decode_value(obj, position, fmt, depth)


def decode_line(line: bytes, position: str) -> Iterator[Item]:
    """One line of a file: JSON, CRI-wrapped JSON, or a base64 CloudWatch subscription blob."""
    stripped = line.strip()
    if not stripped:
        return
    if stripped[:1] in (b"{", b"[", b'"'):
        try:
            obj = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            yield Rejected(position, f"invalid JSON: {exc}")
            return
        if isinstance(obj, str):
            yield Rejected(position, "double-encoded JSON string")
            return
        yield from decode_value(obj, position)
        return
    parts = stripped.split(b" ", 3)  # CRI: <rfc3339> <stream> <P|F> <content>
    if len(parts) == 4 and parts[1] in (b"stdout", b"stderr") and parts[2] in (b"F", b"P"):
        if parts[2] == b"P":
            yield Rejected(position, "CRI partial line (P) without its continuation")
            return
        yield from _decode_text(parts[3], position, "cri")
        return
    if stripped[:4] == b"H4sI":  # base64 of a gzip header: a raw CloudWatch subscription record
        yield from _decode_b64gz(stripped.decode("ascii", "replace"), position)
        return
    yield Rejected(position, "not JSON and not a known envelope")


class Input:
    """An opened input: ``stream`` yields decompressed bytes, ``raw`` reports progress (``tell``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path == "-":
            self.raw: BinaryIO = sys.stdin.buffer
            self.stream: BinaryIO = self.raw
            self.size = 0
            return
        try:
            self.raw = open(path, "rb")  # noqa: SIM115 - closed in close()
            self.size = os.fstat(self.raw.fileno()).st_size
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror or exc}") from exc
        magic = self.raw.read(2)
        self.raw.seek(0)
        self.stream = gzip.GzipFile(fileobj=self.raw) if magic == b"\x1f\x8b" else self.raw  # type: ignore[assignment]

    def tell(self) -> int:
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return 0

    def items(self) -> Iterator[Item]:
        try:
            yield from read_stream(self.stream, self.path)
        except (OSError, EOFError) as exc:  # truncated .gz and friends: keep what was read
            yield Rejected(self.path, f"read error: {_error_text(exc)}")

    def close(self) -> None:
        if self.raw is not sys.stdin.buffer:
            self.stream.close()
            self.raw.close()


_YAML_START = re.compile(rb"^(---|#|[A-Za-z_][\w.@-]*:(\s|$))")
MAX_YAML_BYTES = 256 * 1024 * 1024
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024  # a pretty-printed JSON document is parsed whole


def read_stream(stream: BinaryIO, name: str) -> Iterator[Item]:
    """Lines first; a file whose first line is not a whole JSON value is read as one document;
    a YAML stream (``gcloud logging read`` prints YAML by default) is read document by document."""
    head = stream.read(1)
    if not head:
        return
    rest = _bounded_line(stream, MAX_LINE_BYTES - 1)
    if rest is None:
        yield Rejected(f"{name}:1", f"line longer than {MAX_LINE_BYTES} bytes")
        yield from _read_lines(stream, name, start=2)
        return
    first = head + rest
    if _YAML_START.match(first.lstrip()):
        yield from _read_yaml(first + stream.read(MAX_YAML_BYTES), name)
        return
    if first.strip()[:1] in (b"{", b"[") and not _is_whole_json(first):
        data = first + stream.read(MAX_DOCUMENT_BYTES + 1 - len(first))
        if len(data) > MAX_DOCUMENT_BYTES:
            yield Rejected(f"{name}:1", f"a JSON document larger than {MAX_DOCUMENT_BYTES} bytes is not read whole "
                                        "(write it as one event per line, e.g. `jq -c '.items[]'`)")
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            # Not a pretty-printed document: fall back to lines so good lines still count.
            yield from _read_lines(io.BytesIO(data), name)
            return
        yield from decode_value(obj, f"{name}:1")
        return
    yield from decode_line(first, f"{name}:1")
    yield from _read_lines(stream, name, start=2)


def _yaml_anchor_line(data: bytes, loader: type) -> int | None:
    """The line of the first YAML anchor or alias, or None. Audit events never use them, and
    aliases of aliases expand exponentially (a 400-byte "billion laughs" document becomes
    gigabytes once copied), so a stream with one is refused before anything is built from it."""
    if b"&" not in data and b"*" not in data:
        return None
    for ev in yaml.parse(data, Loader=loader):
        if isinstance(ev, yaml.AliasEvent) or getattr(ev, "anchor", None) is not None:
            return ev.start_mark.line + 1
    return None


def _read_yaml(data: bytes, name: str) -> Iterator[Item]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        line = _yaml_anchor_line(data, loader)
        if line is not None:
            yield Rejected(f"{name}:{line}", "YAML anchors and aliases are not accepted (audit events never "
                                             "use them; they can expand exponentially)")
            return
        docs = list(yaml.load_all(data, Loader=loader))  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        # Only the error's class and place: its message can quote a tag or value from the input.
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        yield Rejected(where, f"not JSON lines and not valid YAML ({type(exc).__name__}{at})")
        return
    except RecursionError:
        yield Rejected(name, "YAML nested too deeply to read")
        return
    for i, doc in enumerate(d for d in docs if d is not None):
        # YAML turns RFC 3339 text into datetimes; audit fields are text, so put them back.
        try:
            plain = _plain(doc)
        except RecursionError:
            yield Rejected(f"{name}:doc{i + 1}", "YAML document nested too deeply to read")
            continue
        yield from decode_value(plain, f"{name}:doc{i + 1}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _is_whole_json(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def _bounded_line(stream: BinaryIO, limit: int | None = None) -> bytes | None:
    """The next line, b"" at the end, or None for a line longer than ``limit`` (skipped without
    ever holding more than ``limit`` bytes of it: a single line with no newline in a multi-GB or
    gzip-expanded file must not exhaust memory)."""
    limit = MAX_LINE_BYTES if limit is None else limit
    line = stream.readline(limit + 1)
    if len(line) <= limit or line.endswith(b"\n"):
        return line
    while True:
        chunk = stream.readline(1 << 20)
        if not chunk or chunk.endswith(b"\n"):
            return None


def _read_lines(stream: BinaryIO, name: str, start: int = 1) -> Iterator[Item]:
    n = start
    while (line := _bounded_line(stream)) != b"":
        if line is None:
            yield Rejected(f"{name}:{n}", f"line longer than {MAX_LINE_BYTES} bytes")
        else:
            yield from decode_line(line, f"{name}:{n}")
        n += 1


# In a directory walk these are documentation or other data, never audit events; a file named
# explicitly is always read.
SKIP_IN_DIRS = (".md", ".csv", ".yaml", ".yml", ".sql", ".py", ".txt", ".rst", ".html")


def expand_paths(paths: Sequence[str]) -> list[str]:
    """Files as given; directories walked in name order; a missing path is an InputError."""
    out: list[str] = []
    for p in paths:
        if p == "-":
            out.append(p)
        elif os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                out.extend(os.path.join(root, f) for f in sorted(files)
                           if not f.startswith(".") and not f.lower().endswith(SKIP_IN_DIRS))
        elif os.path.exists(p):
            out.append(p)
        else:
            raise InputError(f"{p}: no such file or directory")
    return out


def read_paths(paths: Sequence[str]) -> Iterator[Item]:
    for path in expand_paths(paths):
        inp = Input(path)
        try:
            yield from inp.items()
        finally:
            inp.close()
