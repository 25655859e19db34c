"""Follow a log file the way ``tail -F`` does, but resumable and without losing a line.

Position format (JSON, stored in ``source_positions`` in the same transaction as the records it
covers, so a crash can only ever re-read, never skip)::

    {"v": 1, "dev": int, "ino": int, "fp": "<hex sha256 of the first FP_BYTES bytes>" or "", "offset": int}

The fingerprint is empty until the file holds FP_BYTES bytes (a younger file is told apart by inode
and size alone).

Rules:

* Only whole lines are returned; a partial last line waits for its newline.
* Rename rotation (the apiserver's own, logrotate ``create``) and delete-and-recreate: the old file
  handle is read to its end before the new file is opened at offset 0.
* copytruncate: the file shrinks or its first bytes change under the same inode. The copy is
  found among the siblings by its fingerprint and read from our offset first.
* After a restart the file named by the position is found by inode (the live file or a rotated
  sibling, matched on inode and fingerprint); if it is gone, reading starts at the beginning of the
  live file. Re-reading is harmless because the store refuses keys it already holds.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import BinaryIO

import orjson

FP_BYTES = 256


def fingerprint(fh: BinaryIO, length: int = FP_BYTES) -> str:
    """SHA-256 of the first ``length`` bytes, or "" when the file is shorter than that."""
    pos = fh.tell()
    fh.seek(0)
    head = fh.read(length)
    fh.seek(pos)
    return hashlib.sha256(head).hexdigest() if head and len(head) == length else ""


class Position:
    def __init__(self, dev: int, ino: int, fp: str, offset: int) -> None:
        self.dev, self.ino, self.fp, self.offset = dev, ino, fp, offset

    def dumps(self) -> str:
        return orjson.dumps({"v": 1, "dev": self.dev, "ino": self.ino, "fp": self.fp, "offset": self.offset}).decode()

    @classmethod
    def loads(cls, text: str | None) -> Position | None:
        if not text:
            return None
        try:
            d = orjson.loads(text)
            return cls(int(d["dev"]), int(d["ino"]), str(d["fp"]), int(d["offset"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


def siblings(path: str) -> list[str]:
    """Rotated copies next to ``path`` (audit.log.1, audit-2024-….log, audit.log-20240101), oldest last."""
    directory, base = os.path.split(path)
    stem = base.rsplit(".", 1)[0] if "." in base else base
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return []
    out = [os.path.join(directory, n) for n in names
           if n != base and n.startswith(stem) and not n.endswith(".gz")]
    return sorted(out, key=lambda p: _mtime(p), reverse=True)


def _mtime(p: str) -> float:
    try:
        return os.stat(p).st_mtime
    except OSError:
        return 0.0


class Tailer:
    """Yields ``(lines, position)`` chunks; call ``poll()`` repeatedly."""

    def __init__(self, path: str, start: Position | None, max_bytes: int = 1 << 20,
                 from_end: bool = False) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.fh: BinaryIO | None = None
        self.pos: Position | None = None
        self.buf = b""
        self.pending: list[tuple[BinaryIO, Position]] = []  # drained before the live file
        self._resume(start, from_end)

    # -- opening ---------------------------------------------------------------------------------
    def _open(self, path: str) -> tuple[BinaryIO, Position] | None:
        try:
            fh = open(path, "rb")  # noqa: SIM115 - owned by the tailer
        except OSError:
            return None
        st = os.fstat(fh.fileno())
        return fh, Position(st.st_dev, st.st_ino, fingerprint(fh), 0)

    def _resume(self, start: Position | None, from_end: bool) -> None:
        live = self._open(self.path)
        if start is not None:
            if live and (live[1].dev, live[1].ino) == (start.dev, start.ino) and \
                    _same_prefix(live[0], start):
                self.fh, self.pos = live
                self.pos.offset = start.offset
                self.fh.seek(start.offset)
                return
            for sib in siblings(self.path):
                got = self._open(sib)
                if not got:
                    continue
                fh, p = got
                same_inode = (p.dev, p.ino) == (start.dev, start.ino) and _same_prefix(fh, start)
                if same_inode or (start.fp and p.fp == start.fp):
                    p.offset = start.offset
                    fh.seek(start.offset)
                    self.pending.append((fh, p))
                    break
                fh.close()
        if live:
            self.fh, self.pos = live
            if from_end and start is None:
                self.fh.seek(0, os.SEEK_END)
                self.pos.offset = self.fh.tell()

    # -- reading ---------------------------------------------------------------------------------
    def poll(self) -> Iterator[tuple[list[bytes], Position]]:
        while self.pending:
            fh, p = self.pending[0]
            yield from self._drain(fh, p, final=True)
            fh.close()
            self.pending.pop(0)
        if self.fh is None or self.pos is None:
            got = self._open(self.path)
            if not got:
                return
            self.fh, self.pos = got
        self._check_rotation()
        yield from self._drain(self.fh, self.pos, final=False)

    def _drain(self, fh: BinaryIO, p: Position, final: bool) -> Iterator[tuple[list[bytes], Position]]:
        while True:
            chunk = fh.read(self.max_bytes)
            if not chunk:
                if final and self.buf:  # a rotated file never gets its newline: take the rest
                    line, self.buf = self.buf, b""
                    p.offset += len(line)
                    yield [line], _copy(p)
                return
            data = self.buf + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                self.buf = data
                continue
            whole, self.buf = data[:cut + 1], data[cut + 1:]
            p.offset = fh.tell() - len(self.buf)
            yield whole.splitlines(), _copy(p)

    def _check_rotation(self) -> None:
        assert self.fh is not None and self.pos is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return  # deleted and not yet recreated: keep reading the open handle
        if (st.st_dev, st.st_ino) != (self.pos.dev, self.pos.ino):
            # Renamed or recreated: finish the old handle first, then the new file from 0.
            self.pending.append((self.fh, self.pos))
            self.fh, self.pos = None, None
            got = self._open(self.path)
            if got:
                self.fh, self.pos = got
            return
        if st.st_size < self.pos.offset:
            self._truncated()
            return
        current = fingerprint(self.fh)
        if not self.pos.fp:
            self.pos.fp = current
        elif current != self.pos.fp:
            self._truncated()

    def _truncated(self) -> None:
        assert self.fh is not None and self.pos is not None
        old = self.pos
        for sib in siblings(self.path):
            got = self._open(sib)
            if not got:
                continue
            fh, p = got
            if old.fp and p.fp == old.fp and (p.dev, p.ino) != (old.dev, old.ino):
                p.offset = old.offset
                fh.seek(p.offset)
                self.buf = b""
                self.pending.append((fh, p))
                break
            fh.close()
        self.buf = b""
        self.fh.seek(0)
        self.pos = Position(old.dev, old.ino, fingerprint(self.fh), 0)

    def close(self) -> None:
        for fh, _ in self.pending:
            fh.close()
        self.pending.clear()
        if self.fh:
            self.fh.close()


def _copy(p: Position) -> Position:
    return Position(p.dev, p.ino, p.fp, p.offset)


def _same_prefix(fh: BinaryIO, start: Position) -> bool:
    return not start.fp or fingerprint(fh) == start.fp
