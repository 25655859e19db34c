"""Follow a log file the way ``tail -F`` does, but resumable and without losing a line.

Position format (JSON, stored in ``source_positions`` in the same transaction as the records it
covers, so a crash can only ever re-read, never skip)::

    {"v": 2, "dev": int, "ino": int, "fp": "<hex sha256 of the first fp_len bytes>", "fp_len": int,
     "mtime_ns": int, "offset": int}

``fp`` identifies a file's *content generation*: the hash of its first ``fp_len`` bytes
(``fp_len`` grows to FP_BYTES as the file grows). It tells a copy made by copytruncate from the
original, and a truncated-and-rewritten file from the one we were reading.

Rules:

* Only whole lines are returned; a partial last line waits for its newline (a finished, rotated
  file gives up its last bytes when it is drained).
* A line may not hold memory without bound: past ``MAX_LINE_BYTES`` without a newline only its head
  is kept, the rest is skipped to the newline, and the head is returned as the line (its parser
  rejects it: one event lost, never the stream). The saved position never points inside such a
  line, so a restart skips it again instead of reading its tail as lines of their own.
* Rename rotation (the apiserver's own, logrotate ``create``) and delete-and-recreate: the old
  handle is read to its end before the new file is read from offset 0.
* copytruncate: the file shrinks or its first bytes change under the same inode. The copy is found
  among the siblings by fingerprint and read from our offset first. Every chunk is checked against
  the fingerprint after it is read, so a truncation between the rotation check and the read never
  hands out the new generation's bytes at the old offset.
* A live file that was empty when we began watching it has no fingerprint; when content appears,
  every sibling written since (a copytruncate copy of a generation we never saw) is read first.
* A first start (no position) with ``read_from: beginning`` reads the rotated siblings, oldest
  first, before the live file: the history already on the node belongs in the trail.
* Whenever we lose sight of our file (restart, rotation, truncation), every rotated sibling written
  since our file's last write is also read from the start, so two rotations between polls or during
  a restart lose nothing. Re-reading is harmless: the store refuses keys it already holds.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from typing import BinaryIO

import orjson

FP_BYTES = 256
MAX_LINE_BYTES = 64 * 1024 * 1024  # sources.files reads whole files with the same bound
log = logging.getLogger("kubetrail.sources.tail")


def _hash_prefix(fh: BinaryIO, length: int) -> str | None:
    """SHA-256 of exactly the first ``length`` bytes, or None when the file is shorter."""
    pos = fh.tell()
    fh.seek(0)
    head = fh.read(length)
    fh.seek(pos)
    return hashlib.sha256(head).hexdigest() if len(head) == length else None


class Position:
    """Where to resume. ``start`` (not persisted) is where the chunk it came with began, so a
    caller that needs each line's own offset (log-line keys, partial CRI lines) can count them."""

    def __init__(self, dev: int, ino: int, fp: str = "", fp_len: int = 0, offset: int = 0,
                 mtime_ns: int = 0) -> None:
        self.dev, self.ino, self.fp, self.fp_len = dev, ino, fp, fp_len
        self.offset, self.mtime_ns = offset, mtime_ns
        self.start = offset

    def dumps(self) -> str:
        return orjson.dumps({"v": 2, "dev": self.dev, "ino": self.ino, "fp": self.fp, "fp_len": self.fp_len,
                             "mtime_ns": self.mtime_ns, "offset": self.offset}).decode()

    @classmethod
    def loads(cls, text: str | None) -> Position | None:
        if not text:
            return None
        try:
            d = orjson.loads(text)
            return cls(int(d["dev"]), int(d["ino"]), str(d["fp"]), int(d.get("fp_len", 0)),
                       int(d["offset"]), int(d.get("mtime_ns", 0)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def copy(self, start: int | None = None) -> Position:
        p = Position(self.dev, self.ino, self.fp, self.fp_len, self.offset, self.mtime_ns)
        p.start = self.offset if start is None else start
        return p

    def same_content(self, fh: BinaryIO) -> bool:
        """Does ``fh`` start with the bytes this position was fingerprinted on?"""
        return self.fp_len == 0 or _hash_prefix(fh, self.fp_len) == self.fp


class _File:
    """One open file being drained, with its own partial-line buffer."""

    def __init__(self, fh: BinaryIO, pos: Position, newline_only: bool = False,
                 max_line: int = MAX_LINE_BYTES) -> None:
        self.fh, self.pos, self.buf = fh, pos, b""
        self.newline_only = newline_only
        self.max_line = max_line
        self.over = 0  # bytes of an over-long line read past its kept head (``buf``), newline not seen yet

    @classmethod
    def open(cls, path: str, newline_only: bool = False, max_line: int = MAX_LINE_BYTES) -> _File | None:
        try:
            # Unbuffered: a buffered reader may answer a seek(0) from stale buffer bytes and miss a
            # truncation.
            fh = open(path, "rb", buffering=0)  # noqa: SIM115 - owned by the _File
        except OSError:
            return None
        st = os.fstat(fh.fileno())
        f = cls(fh, Position(st.st_dev, st.st_ino, mtime_ns=st.st_mtime_ns), newline_only, max_line)
        f.refresh_fp()
        return f

    @property
    def ident(self) -> tuple[int, int]:
        return self.pos.dev, self.pos.ino

    def refresh_fp(self) -> None:
        size = os.fstat(self.fh.fileno()).st_size
        length = min(size, FP_BYTES)
        if length > self.pos.fp_len:
            fp = _hash_prefix(self.fh, length)
            if fp is not None:
                self.pos.fp, self.pos.fp_len = fp, length

    def seek(self, offset: int) -> None:
        self.fh.seek(offset)
        self.pos.offset = offset
        self.buf, self.over = b"", 0

    def size(self) -> int:
        return os.fstat(self.fh.fileno()).st_size

    def truncated(self) -> bool:
        size = os.fstat(self.fh.fileno()).st_size
        return size < self.pos.offset + len(self.buf) + self.over or not self.pos.same_content(self.fh)

    def drain(self, max_bytes: int, final: bool) -> Iterator[tuple[list[bytes], Position]]:
        while True:
            chunk = self.fh.read(max_bytes)
            if not chunk:
                if final and (self.buf or self.over):
                    yield self._take_held(0)
                return
            if not self.pos.same_content(self.fh):
                # Truncated and rewritten between the rotation check and this read: the chunk is
                # the new generation's, read from our old offset. Drop it; the next poll sees the
                # truncation and reads the rest of our generation from its copy.
                log.debug("ino %d changed under a read at offset %d; chunk dropped", self.pos.ino, self.pos.offset)
                self.fh.seek(self.pos.offset + len(self.buf) + self.over)
                return
            self.pos.mtime_ns = max(self.pos.mtime_ns, os.fstat(self.fh.fileno()).st_mtime_ns)
            if self.over:  # inside an over-long line: skip to its newline
                nl = chunk.find(b"\n")
                if nl < 0:
                    self.over += len(chunk)
                    continue
                yield self._take_held(nl + 1)
                chunk = chunk[nl + 1:]
            data = self.buf + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                if len(data) > self.max_line:
                    log.warning("%s: line at offset %d is longer than %d bytes: its head is kept, the rest "
                                "skipped", self.fh.name, self.pos.offset, self.max_line)
                    data, self.over = data[:self.max_line], len(data) - self.max_line
                self.buf = data
                continue
            whole, self.buf = data[:cut + 1], data[cut + 1:]
            start = self.pos.offset
            self.pos.offset = self.fh.tell() - len(self.buf)
            self.refresh_fp()
            yield (whole[:-1].split(b"\n") if self.newline_only else whole.splitlines()), self.pos.copy(start)

    def _take_held(self, rest: int) -> tuple[list[bytes], Position]:
        """The held line (an over-long line's head, or a finished file's last bytes) as a chunk of its
        own; ``rest`` more bytes of it (up to and with its newline) were read just now."""
        line, start = self.buf, self.pos.offset
        self.pos.offset += len(line) + self.over + rest
        self.buf, self.over = b"", 0
        return [line], self.pos.copy(start)

    def close(self) -> None:
        self.fh.close()


def siblings(path: str, prefix: str | None = None, skip: tuple[str, ...] = (".gz",)) -> list[str]:
    """Rotated copies next to ``path`` (audit.log.1, audit-2024-….log, audit.log-20240101), oldest
    first. ``prefix`` narrows the names (kubelet's ``0.log.<time>`` must not match ``10.log``); names
    ending in ``skip`` are not rotations (compressed copies; kubelet's ``.tmp`` while it gzips)."""
    directory, base = os.path.split(path)
    stem = prefix if prefix is not None else base.rsplit(".", 1)[0] if "." in base else base
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return []
    out = [os.path.join(directory, n) for n in names
           if n != base and n.startswith(stem) and not n.endswith(skip)]
    return sorted(out, key=_mtime_ns)


def _mtime_ns(p: str) -> int:
    try:
        return os.stat(p).st_mtime_ns
    except OSError:
        return 0


class Tailer:
    """Yields ``(lines, position)`` chunks from ``poll()``; the position is where to resume."""

    def __init__(self, path: str, start: Position | None, max_bytes: int = 1 << 20,
                 from_end: bool = False, *, newline_only: bool = False, sibling_prefix: str | None = None,
                 max_line_bytes: int = MAX_LINE_BYTES) -> None:
        """``newline_only``: split lines on ``\n`` alone (a CRI line's text may hold ``\r``), so
        ``len(line) + 1`` per line adds up to the chunk (except a chunk holding one over-long line's
        head). ``sibling_prefix``: see ``siblings``."""
        self.path = path
        self.max_line_bytes = max_line_bytes
        self.max_bytes = max_bytes
        self.newline_only = newline_only
        self.sibling_prefix = sibling_prefix
        self.live: _File | None = None
        self.pending: list[_File] = []  # finished files, drained in order before the live one
        self.done: set[tuple[tuple[int, int], str]] = set()  # (ident, fp) of files drained to their end
        live = self._open(path)
        log.debug("start %s: saved %s, live ino %s", path, start.dumps() if start else None,
                  live.pos.ino if live else None)
        if start is not None and live and live.ident == (start.dev, start.ino) and start.fp_len \
                and start.same_content(live.fh) and os.fstat(live.fh.fileno()).st_size >= start.offset:
            live.seek(start.offset)
            self.live = live
            return
        if start is not None:
            self._queue_lost(start, exclude=live.ident if live else None)
        elif not from_end:
            self._queue_lost(Position(-1, -1), exclude=live.ident if live else None)
        self.live = live
        if live and from_end and start is None:
            live.fh.seek(0, os.SEEK_END)
            live.pos.offset = live.fh.tell()

    def _open(self, path: str) -> _File | None:
        return _File.open(path, self.newline_only, self.max_line_bytes)

    def _siblings(self) -> list[str]:
        if self.sibling_prefix is None:
            return siblings(self.path)
        return siblings(self.path, self.sibling_prefix, (".gz", ".tmp"))

    def _queue_lost(self, lost: Position, exclude: tuple[int, int] | None) -> None:
        """Queue the file we lost sight of (from its offset) and every sibling written after it."""
        own_found = False
        for sib in self._siblings():
            f = self._open(sib)
            if f is None:
                continue
            if f.ident == exclude:
                f.close()
                continue
            same_gen = lost.fp_len > 0 and lost.same_content(f.fh)
            own = same_gen and (f.ident == (lost.dev, lost.ino) or not own_found)
            if own and not own_found:
                own_found = True
                f.seek(min(lost.offset, os.fstat(f.fh.fileno()).st_size))
                self.pending.append(f)
                log.debug("resuming %s (ino %d) at offset %d", sib, f.pos.ino, f.pos.offset)
            elif not same_gen and f.pos.mtime_ns >= lost.mtime_ns:
                self.pending.append(f)
                log.debug("queued %s (ino %d), written since we lost ino %d", sib, f.pos.ino, lost.ino)
            else:
                f.close()

    def poll(self) -> Iterator[tuple[list[bytes], Position]]:
        while True:
            while self.pending:
                f = self.pending[0]
                if f.truncated():  # truncated after we queued it: its tail is in a copy
                    self.pending.pop(0)
                    self._lost(f)
                    continue
                yield from f.drain(self.max_bytes, final=not f.truncated())
                self.pending.pop(0)
                if f.truncated():
                    self._lost(f)
                    continue
                self.done.add((f.ident, f.pos.fp))
                f.close()
            if self.live is None:
                self.live = self._open(self.path)
                if self.live is None:
                    return
            if self._rotated():
                continue
            if self.live.pos.fp_len == 0 and self.live.size() > 0 and self._queue_unseen(self.live):
                continue
            break
        yield from self.live.drain(self.max_bytes, final=False)

    def _queue_unseen(self, live: _File) -> bool:
        """``live`` was empty when we began watching it and now has content. If it was filled,
        copied and truncated in between (copytruncate of a generation we never saw), the copy is
        a sibling written since: read those first. Files already drained are skipped; anything
        else read twice is refused by the store's keys. Returns True when something was queued."""
        since = live.pos.copy()  # its identity and the mtime it had while empty
        live.refresh_fp()  # from now on a truncation of this generation is seen by its fingerprint
        before = len(self.pending)
        self._queue_newer(since, exclude=None)
        return len(self.pending) > before

    def _lost(self, f: _File) -> None:
        """``f`` was truncated under us: read its copy from our offset, then it from the start."""
        self._queue_lost(f.pos, exclude=f.ident)
        f.fh.seek(0)
        st = os.fstat(f.fh.fileno())
        f.pos = Position(st.st_dev, st.st_ino, mtime_ns=st.st_mtime_ns)
        f.buf, f.over = b"", 0
        f.refresh_fp()
        self.pending.append(f)

    def _rotated(self) -> bool:
        """Detects rotation/truncation and queues what must be read first; True when it did."""
        assert self.live is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return False  # deleted and not yet recreated: keep reading the open handle
        live = self.live
        if (st.st_dev, st.st_ino) != live.ident:
            log.debug("rotated: %s is ino %d now, was %d (truncated: %s)", self.path, st.st_ino, live.pos.ino,
                      live.truncated())
            # Open the new file now, not after the old one is drained: draining commits and takes
            # time, and a copytruncate of the new file in that window must still be seen (by its
            # fingerprint, or as a sibling written since it was empty).
            newer = self._open(self.path)
            if live.truncated():
                self._lost(live)
            else:
                self.pending.append(live)
                self._queue_newer(live.pos, exclude=newer.ident if newer else None)
            self.live = newer
            return True
        if live.truncated():
            log.debug("truncated: ino %d at offset %d", live.pos.ino, live.pos.offset)
            self.live = None
            self._lost(live)
            self.live = self.pending.pop()  # _lost queued it last, reset to offset 0: it stays live
            return True
        return False

    def _queue_newer(self, old: Position, exclude: tuple[int, int] | None) -> None:
        for sib in self._siblings():
            f = self._open(sib)
            if f is None:
                continue
            if f.ident not in ((old.dev, old.ino), exclude) and (f.ident, f.pos.fp) not in self.done \
                    and f.pos.mtime_ns >= old.mtime_ns:
                log.debug("queued newer %s (ino %d)", sib, f.pos.ino)
                self.pending.append(f)
            else:
                f.close()

    def close(self) -> None:
        for f in self.pending:
            f.close()
        self.pending.clear()
        if self.live:
            self.live.close()
