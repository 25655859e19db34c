"""Files and streams given to ``ingest`` (and other readers) → decoded items, with bounded work.

What a file holds is decided per line, never for the whole file from its first line:

* a line that starts with ``{``/``[`` (or is CRI-wrapped, or a base64 CloudWatch record) is one
  JSON value: ``formats.decode_line``;
* a line that looks like YAML (``key:``, ``---``, ``#``) starts a YAML block, which runs until the
  next JSON line: ``gcloud logging read`` prints YAML, and a stray ``Warning: …`` line printed by a
  tool in front of JSON lines is a one-line block (one reject), not a reason to lose the file;
* a file whose first line opens a JSON value it does not close is one pretty-printed document.

A UTF-8 byte order mark in front of a line is ignored. Work is bounded per input, not only bytes:
runs of blank lines are skipped in C (a gzip of a gigabyte of newlines costs the decompression,
not a Python loop per line), a line, a YAML block and a document have size limits, and after
``MAX_BAD_RUN`` rejects in a row the input is taken for something other than an audit log and the
rest of it is skipped with one reject saying so.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import sys
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any, BinaryIO

import orjson
import yaml

from kubetrail.errors import InputError
from kubetrail.record import Decoded, Rejected
from kubetrail.sources._tail import MAX_LINE_BYTES
from kubetrail.sources.formats import (
    BOM,
    Item,
    decode_line,
    decode_line_items,
    decode_value,
    guarded,
    loads_lossy,
    noted,
)

MAX_YAML_BYTES = 256 * 1024 * 1024
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024  # a pretty-printed JSON document is parsed whole
MAX_BAD_RUN = 100_000  # rejects in a row: no audit log looks like that
CHUNK_BYTES = 1 << 20

_ONE_ITEM = (Decoded, Rejected)  # what decode_line_items returns for a line of one item
_NOT_BLANK = re.compile(rb"[^ \t\r\n\f\v]")
_BLANK_BYTES = frozenset(b" \t\r\n\f\v")
_YAML_START = re.compile(rb"^(---|#|[A-Za-z_][\w.@-]*:(\s|$))")
_CRI_START = re.compile(rb"^\S+ (?:stdout|stderr) [FP] ")


class _Lines:
    """The lines of a stream, read in large chunks; blank lines are counted, not returned."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self._read = getattr(stream, "read1", stream.read)  # one step at a time: an error keeps earlier data
        self.buf = b""
        self.pos = 0
        self.eof = False
        self.number = 1  # of the next line (at the end: one past the last newline read)
        # The last line read had no newline after it (the stream ended inside it): then
        # ``number - first number - unterminated`` is the newlines the stream held (``newlines_read``).
        self.unterminated = False

    def _more(self) -> bool:
        if self.eof:
            return False
        chunk = self._read(CHUNK_BYTES)
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0
        return True

    def next(self, limit: int) -> tuple[int, int, bytes | None] | None:
        """(line number, blank lines before it, the line without its newline — None when it is
        longer than ``limit``, which is skipped without being held), or None at the end."""
        pos, buf = self.pos, self.buf
        if pos < len(buf) and buf[pos] not in _BLANK_BYTES:  # the common case: a whole line starts here
            end = buf.find(b"\n", pos)
            if 0 <= end - pos <= limit:
                self.pos = end + 1
                number = self.number
                self.number = number + 1
                return number, 0, buf[pos:end]
        return self._next_general(limit)

    def _next_general(self, limit: int) -> tuple[int, int, bytes | None] | None:
        """``next`` for whatever the short path does not take: blank runs, a line the buffer does not
        hold whole, an over-long line."""
        blanks = 0
        while (m := _NOT_BLANK.search(self.buf, self.pos)) is None:
            blanks += self.buf.count(b"\n", self.pos)
            self.pos = len(self.buf)
            if not self._more():
                self.number += blanks  # the blank lines at the end are lines read too (``newlines_read``)
                return None
        start = self.buf.rfind(b"\n", self.pos, m.start()) + 1 or self.pos
        blanks += self.buf.count(b"\n", self.pos, start)
        self.pos = start
        parts: list[bytes] = []
        size = 0
        line: bytes | None = None
        while True:
            end = self.buf.find(b"\n", self.pos)
            piece = self.buf[self.pos:end if end >= 0 else len(self.buf)]
            size += len(piece)
            if size > limit:
                self._skip_line()
                break
            parts.append(piece)
            if end >= 0:
                self.pos = end + 1
                line = b"".join(parts)
                break
            self.pos = len(self.buf)
            if not self._more():
                line = b"".join(parts)
                self.unterminated = True
                break
        number = self.number + blanks
        self.number = number + 1
        return number, blanks, line

    def _skip_line(self) -> None:
        while (end := self.buf.find(b"\n", self.pos)) < 0:
            self.pos = len(self.buf)
            if not self._more():
                self.unterminated = True
                return
        self.pos = end + 1

    def newlines_read(self, first: int) -> int | None:
        """The newlines in the whole stream, read to its end from line ``first``: counted as the lines
        went by (a preparation worker needs its chunk's count, and ``bytes.count`` over a 1 MiB chunk
        cost ~0.8 µs per 2.9 KB event: one byte at a time), None when the stream was not read to its end."""
        if not self.eof or self.pos < len(self.buf):
            return None
        return self.number - first - self.unterminated

    def rest(self, limit: int) -> bytes:
        """What is left of the stream, at most ``limit`` bytes."""
        data = self.buf[self.pos:self.pos + limit]
        self.pos = len(self.buf)
        return data + (self.stream.read(limit - len(data)) if len(data) < limit else b"")


def read_stream(stream: BinaryIO, name: str) -> Iterator[Item]:
    """Every item of one input; see the module docstring for how lines, YAML and documents mix."""
    lines = _Lines(stream)
    first = lines.next(MAX_LINE_BYTES)
    if first is None:
        return
    line = first[2]
    if line is not None:
        head = _unbom(line).strip()
        if head[:1] in (b"{", b"[") and not _is_whole_json(head):
            yield from _bounded(_read_document(head, lines, name, first[0]), name)
            return
    yield from _bounded(_read_lines(lines, name, first), name)


def _unbom(line: bytes) -> bytes:
    return line[3:] if line[:3] == BOM else line


def _is_whole_json(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return "depth" in str(exc)  # whole, only too deep: decode_line cuts it
    return True


def _starts_json_line(line: bytes) -> bool:
    return line[:1] in (b"{", b"[") or line[:4] == b"H4sI" or _CRI_START.match(line) is not None


_SHORT_LINES = True  # ``_read_lines``' short branch (tests turn it off to compare it with the general reading)


def _read_lines(lines: _Lines, name: str, item: tuple[int, int, bytes | None] | None) -> Iterator[Item]:
    block: _YamlBlock | None = None
    short = _SHORT_LINES
    while item is not None:
        number, blanks, line = item
        if short and block is None and line is not None and line[:1] == b"{":
            # The common line, one JSON object: what the general reading below does with it (no BOM,
            # no YAML start, no block to end), without its steps; a plain Event is one item as is.
            items = decode_line_items(line, f"{name}:{number}")
            if isinstance(items, _ONE_ITEM):
                yield items
            else:
                yield from items
            item = lines.next(MAX_LINE_BYTES)
            continue
        if line is not None:
            line = _unbom(line)
        if line is not None and block is not None and not _starts_json_line(line):
            block.add(blanks, line)
        else:
            if block is not None:
                yield from block.items()
                block = None
            if line is None:
                yield Rejected(f"{name}:{number}", f"line longer than {MAX_LINE_BYTES} bytes")
            elif _YAML_START.match(line):
                block = _YamlBlock(name, number, line)
            else:
                yield from decode_line(line, f"{name}:{number}")
        item = lines.next(MAX_LINE_BYTES)
    if block is not None:
        yield from block.items()


def _bounded(items: Iterator[Item], name: str) -> Iterator[Item]:
    """``items`` until ``MAX_BAD_RUN`` rejects in a row: then one reject, and the rest is skipped."""
    run = 0
    for item in items:
        run = run + 1 if isinstance(item, Rejected) else 0
        if run > MAX_BAD_RUN:
            yield Rejected(item.position, f"{MAX_BAD_RUN} rejects in a row: this is not an audit log, the rest "
                                          f"of {name} is skipped")
            return
        yield item


def _read_document(head: bytes, lines: _Lines, name: str, number: int) -> Iterator[Item]:
    data = head + b"\n" + lines.rest(MAX_DOCUMENT_BYTES + 1 - len(head))
    if len(data) > MAX_DOCUMENT_BYTES:
        yield Rejected(f"{name}:{number}", f"a JSON document larger than {MAX_DOCUMENT_BYTES} bytes is not read "
                                           "whole (write it as one event per line, e.g. `jq -c '.items[]'`)")
        return
    try:
        obj, note = loads_lossy(data)
    except orjson.JSONDecodeError:
        # Not a pretty-printed document: read it as lines so good lines still count.
        rest = _Lines(io.BytesIO(data))
        rest.number = number
        yield from _read_lines(rest, name, rest.next(MAX_LINE_BYTES))
        return
    position = f"{name}:{number}"
    yield from guarded(noted(decode_value(obj, position), note), position)


_DOCUMENT_START = re.compile(rb"^---(?=[ \t\r\n]|$)", re.M)


class _YamlBlock:
    """Lines of YAML between JSON lines, parsed document by document when the block ends: a
    document that cannot be read (a syntax error, an alias) costs itself, not its neighbours. A
    ``---`` at the start of a line always begins a document, even inside a block scalar."""

    def __init__(self, name: str, number: int, line: bytes) -> None:
        self.name, self.number = name, number
        self.parts = [line]
        self.size = len(line)

    def add(self, blanks: int, line: bytes) -> None:
        self.size += blanks + len(line) + 1
        if self.size <= MAX_YAML_BYTES:  # blank lines are kept: they can be part of a block scalar
            self.parts += [b"\n" * (blanks + 1), line]

    def items(self) -> Iterator[Item]:
        if self.size > MAX_YAML_BYTES:
            yield Rejected(f"{self.name}:{self.number}", f"YAML larger than {MAX_YAML_BYTES} bytes is not read")
            return
        data = b"".join(self.parts) + b"\n"
        starts = [m.start() for m in _DOCUMENT_START.finditer(data)]
        if not starts or starts[0] != 0:
            starts.insert(0, 0)
        line = self.number
        for start, end in zip(starts, [*starts[1:], len(data)], strict=True):
            piece = data[start:end]
            if piece.strip():
                yield from _read_yaml(piece, self.name, line)
            line += piece.count(b"\n")


def _yaml_anchor_line(data: bytes, loader: type) -> int | None:
    """The line of the first YAML anchor or alias, or None. Audit events never use them, and
    aliases of aliases expand exponentially (a 400-byte "billion laughs" document becomes
    gigabytes once copied), so a stream with one is refused before anything is built from it."""
    if b"&" not in data and b"*" not in data:
        return None
    for ev in yaml.parse(data, Loader=loader):
        if isinstance(ev, yaml.AliasEvent) or getattr(ev, "anchor", None) is not None:
            return int(ev.start_mark.line) + 1
    return None


def _read_yaml(data: bytes, name: str, first: int = 1) -> Iterator[Item]:
    """The documents of a YAML stream that starts at line ``first`` of ``name``; each document's
    position is the line it starts on. An error costs the rest of the stream, not what came before."""
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    last = first + max(data.rstrip(b"\n").count(b"\n"), 0)
    try:
        line = _yaml_anchor_line(data, loader_class)
    except yaml.YAMLError as exc:
        yield _yaml_reject(exc, name, first, last)
        return
    if line is not None:
        yield Rejected(f"{name}:{first + line - 1}", "YAML anchors and aliases are not accepted (audit events "
                                                     "never use them; they can expand exponentially)")
        return
    loader = loader_class(data)
    try:
        while True:
            try:
                if not loader.check_node():
                    return
                node = loader.get_node()
                doc = loader.construct_document(node)
            except yaml.YAMLError as exc:
                yield _yaml_reject(exc, name, first, last)
                return
            except RecursionError:
                yield Rejected(f"{name}:{first}", "YAML nested too deeply to read")
                return
            if doc is None:
                continue
            position = f"{name}:{first + node.start_mark.line}"
            try:
                plain = _plain(doc)  # YAML turns RFC 3339 text into datetimes; audit fields are text
            except RecursionError:
                yield Rejected(position, "YAML document nested too deeply to read")
                continue
            yield from guarded(decode_value(plain, position), position)
    finally:
        loader.dispose()


def _yaml_reject(exc: yaml.YAMLError, name: str, first: int, last: int) -> Rejected:
    # Only the error's class and place (within the document: an unclosed one is found at its end):
    # its message can quote a tag or value from the input.
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = min(first + mark.line, last) if mark is not None else first
    where = f"{name}:{line}"
    at = f" at line {line}, column {mark.column + 1}" if mark is not None else ""
    return Rejected(where, f"not JSON lines and not valid YAML ({type(exc).__name__}{at})")


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


class Input:
    """An opened input: ``stream`` yields decompressed bytes, ``raw`` reports progress (``tell``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.at: int | None = None  # progress set by a reader that does not read ``raw`` (workers' byte ranges)
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
        if self.at is not None:
            return self.at
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return 0

    def items(self) -> Iterator[Item]:
        try:
            yield from read_stream(self.stream, self.path)
        except (OSError, EOFError) as exc:  # truncated .gz and friends: keep what was read
            yield Rejected(self.path, f"read error: {'bad gzip data' if isinstance(exc, gzip.BadGzipFile) else exc}")

    def close(self) -> None:
        if self.raw is not sys.stdin.buffer:
            self.stream.close()
            self.raw.close()


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

