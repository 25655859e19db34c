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
input, because one bad line must not stop an ingest of millions. That is structural, not a promise
about each branch: ``decode_line`` and every item of an array or EventList run under ``guarded``,
so an unforeseen exception costs the one line or item it happened in. A value nested deeper than
orjson reads (1024 levels) is cut at ``MAX_JSON_DEPTH`` and the event kept with a ``lossy`` note,
because the request happened and belongs in the trail. Reading files and streams (lines, YAML
blocks, documents, gzip) is ``sources/files.py``.
"""

from __future__ import annotations

import base64
import gzip
import re
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from kubetrail.record import Decoded, Rejected
from kubetrail.sources.cloud_gke import gke_to_event, shown

# Deeper than this (from the top of a line or body) a JSON value is cut when orjson refuses it.
MAX_JSON_DEPTH = 64
CUT_MARKER = "[kubetrail: cut, nested too deep]"
BOM = b"\xef\xbb\xbf"
# A base64+gzip CloudWatch blob may expand to at most this much: a few hundred KiB of input must
# not become gigabytes in memory (a "gzip bomb"). Real subscription records are far below 1 MiB.
MAX_GZIP_BYTES = 256 * 1024 * 1024
# Arrays, EventLists and envelopes nested inside each other: real deliveries use two or three
# levels; a line of a thousand nested arrays must be a reject, not a RecursionError.
MAX_NESTING = 8


Item = Decoded | Rejected
_ONE_ITEM = (Decoded, Rejected)

_EVENT_KEYS = ("auditID", "stage", "verb", "requestURI")
# The top-level fields whose type the pipeline relies on (null is allowed: it reads as absent).
_FIELD_TYPES: tuple[tuple[str, type], ...] = (
    ("auditID", str), ("verb", str), ("stage", str), ("requestURI", str), ("user", dict), ("objectRef", dict),
    ("responseStatus", dict), ("sourceIPs", list), ("annotations", dict), ("userAgent", str),
    ("stageTimestamp", str), ("requestReceivedTimestamp", str), ("level", str))


_STR_OR_NONE = frozenset({str, type(None)})
_DICT_OR_NONE = frozenset({dict, type(None)})
_LIST_OR_NONE = frozenset({list, type(None)})
_INT_OR_NONE = (int, type(None))  # ``int | None`` built once (as an expression it made a union per event)


def _field_types_reason(obj: dict[str, Any]) -> str | None:
    """The first of the ``_FIELD_TYPES`` fields whose value is neither null nor of its type."""
    get = obj.get
    for field, typ in _FIELD_TYPES:
        value = get(field)
        if value is not None and not isinstance(value, typ):
            return f"{field} has type {type(value).__name__}, expected {typ.__name__}"
    return None


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
    if "auditID" not in obj or "verb" not in obj:
        return "missing auditID or verb"
    get = obj.get
    t = type
    # The common event, read straight through: each field's exact type, or null/missing; anything
    # else (a subclass, a wrong type) is decided by the loop below, which names the first wrong
    # field. ~2 k instructions less per event (tests/unit/speed/test_worker_path.py: against the loop).
    if not (t(get("auditID")) in _STR_OR_NONE and t(get("verb")) in _STR_OR_NONE
            and t(get("stage")) in _STR_OR_NONE and t(get("requestURI")) in _STR_OR_NONE
            and t(get("user")) in _DICT_OR_NONE and t(get("objectRef")) in _DICT_OR_NONE
            and t(get("responseStatus")) in _DICT_OR_NONE and t(get("sourceIPs")) in _LIST_OR_NONE
            and t(get("annotations")) in _DICT_OR_NONE and t(get("userAgent")) in _STR_OR_NONE
            and t(get("stageTimestamp")) in _STR_OR_NONE and t(get("requestReceivedTimestamp")) in _STR_OR_NONE
            and t(get("level")) in _STR_OR_NONE):
        reason = _field_types_reason(obj)
        if reason:
            return reason
    user = get("user") or {}
    if "username" in user and not isinstance(user["username"], str):
        return "user.username is not a string"
    if "groups" in user and user["groups"] is not None and not isinstance(user["groups"], list):
        return "user.groups is not a list"
    status = get("responseStatus") or {}
    if "code" in status and not isinstance(status["code"], _INT_OR_NONE):
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
            where = f"{position}[{i}]"
            yield from guarded(decode_value(item, where, fmt or "array", depth + 1), where)
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
            where = f"{position}.items[{i}]"
            yield from guarded(decode_value(item, where, "eventlist", depth + 1), where)
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
        obj, note = loads_lossy(text)
    except orjson.JSONDecodeError as exc:
        yield Rejected(position, f"invalid JSON inside {fmt} envelope: {exc}")
        return
    if isinstance(obj, str):
        yield Rejected(position, "double-encoded JSON string")
        return
    yield from noted(decode_value(obj, position, fmt, depth), note)


def decode_line(line: bytes, position: str) -> Iterator[Item]:
    """One line of a file: JSON, CRI-wrapped JSON, or a base64 CloudWatch subscription blob.
    Whatever goes wrong inside costs this line only (see ``guarded``).

    A line that is one JSON object (nearly every line of an apiserver log is one plain Event) is
    parsed once here, with the outcome ``_decode_line`` gives it: a plain Event takes a short path
    without generators; anything else (envelopes, lists, bad JSON, a nesting cut, an exception in
    the short path) goes the general way (tests/hostile/test_decode_fast_path.py)."""
    items = decode_line_items(line, position)
    return iter((items,)) if isinstance(items, _ONE_ITEM) else items


def decode_line_items(line: bytes, position: str) -> Item | Iterator[Item]:
    """``decode_line``, with the one item of a plain Event line returned as itself (no iterator: the
    file reader's loop takes it as is, ~0.2 µs less per line); every other line's items as an iterator."""
    if line[:1] == b"{":
        try:
            obj = orjson.loads(line)  # whitespace JSON does not allow (\x0c) fails: the general path strips it
        except Exception:  # noqa: BLE001 - bad JSON, a nesting to cut, or worse: the general path says which
            return guarded(_decode_line(line, position), position)
        if "auditID" in obj and obj.get("kind") != "EventList":
            try:
                reason = check_event(obj)
                return Rejected(position, reason) if reason else Decoded(obj, "event", position)
            except Exception:  # noqa: BLE001 - the general path decodes the line again and names it
                return guarded(_decode_line(line, position), position)
        return guarded(decode_value(obj, position), position)
    return guarded(_decode_line(line, position), position)


def _decode_line(line: bytes, position: str) -> Iterator[Item]:
    stripped = line.strip()
    if stripped[:3] == BOM:  # Windows editors and some exporters start a file with one
        stripped = stripped[3:].lstrip()
    if not stripped:
        return
    if stripped[:1] in (b"{", b"[", b'"'):
        try:
            obj, note = loads_lossy(stripped)
        except orjson.JSONDecodeError as exc:
            yield Rejected(position, f"invalid JSON: {exc}")
            return
        if isinstance(obj, str):
            yield Rejected(position, "double-encoded JSON string")
            return
        yield from noted(decode_value(obj, position), note)
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


def guarded(items: Iterator[Item], position: str) -> Iterator[Item]:
    """``items``, until one raises: then one reject for ``position`` naming the exception's type
    (never its message, which could quote the input) and the rest of this value is given up.
    Decoders return rejects for the input they understand; this is for the input nobody foresaw."""
    try:
        yield from items
    except RecursionError:
        yield Rejected(position, "nested too deeply to decode")
    except Exception as exc:  # noqa: BLE001 - one hostile value must never stop the stream
        yield Rejected(position, f"cannot be decoded ({type(exc).__name__})")


# A JSON string (escapes included) or a bracket: enough to follow the nesting of valid JSON.
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_CUT_NOTE = f"nested deeper than {MAX_JSON_DEPTH} levels: the rest was cut"


def cut_deep(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> bytes:
    """``raw`` with every array or object that starts below ``max_depth`` levels replaced by the
    string ``CUT_MARKER``. Works on the bytes, so it handles what no parser will build."""
    out: list[bytes] = []
    last, depth, cut_from = 0, 0, -1
    marker = orjson.dumps(CUT_MARKER)
    for m in _JSON_TOKEN.finditer(raw):
        c = raw[m.start()]
        if c == 0x22:  # a string: skipped whole
            continue
        if c in (0x5B, 0x7B):
            depth += 1
            if depth == max_depth + 1:
                cut_from = m.start()
        else:
            if depth == max_depth + 1 and cut_from >= 0:
                out += [raw[last:cut_from], marker]
                last, cut_from = m.end(), -1
            depth -= 1
    out.append(raw[last:])
    return b"".join(out)


def loads_lossy(raw: str | bytes) -> tuple[Any, str]:
    """``orjson.loads``, except that a value nested deeper than orjson reads is cut (see
    ``cut_deep``) instead of refused; returns (value, lossy note or ""). Other errors raise."""
    try:
        return orjson.loads(raw), ""
    except orjson.JSONDecodeError as exc:
        if "depth" not in str(exc):
            raise
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
        try:
            return orjson.loads(cut_deep(data)), _CUT_NOTE
        except orjson.JSONDecodeError:
            raise exc from None


def noted(items: Iterator[Item], note: str) -> Iterator[Item]:
    """``items`` with ``note`` added to every event's ``lossy`` list (when there is a note)."""
    for item in items:
        if note and isinstance(item, Decoded):
            item.lossy = [*item.lossy, note]
        yield item
