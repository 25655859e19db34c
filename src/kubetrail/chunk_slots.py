"""Shared-memory slots through which the writer and its forked workers pass chunks (``kubetrail.workers``).

A worker's result for one chunk is ~1.6 MB of MessagePack for ~350 RequestResponse events. Through
the executor's pipe it was pickled, written and read back in 64 KiB pieces with a wake-up each,
joined and unpickled: ~5 µs of CPU per event in the two processes, 3 of them on the writer's
result thread (bench/RESULTS.md, "Eighth session"). A slot is an anonymous shared-memory file
(``memfd_create``) made before the workers are forked, so every process holds it under the same
descriptor: a worker writes its result there with one ``pwrite`` and returns only the length; the
writer reads it with one ``pread``. The same slot can carry the chunk to the worker first (input the
writer cut itself: stdin, .gz).

A slot belongs to one chunk from its submission until the writer has read the result, so there are
as many slots as chunks may be in flight. Nothing has a name: the memory goes when the last process
holding it closes it, crash or not. Where ``memfd_create`` is missing (not Linux) or the workers are
not forked (a forkserver's children do not share the writer's descriptors), there are no slots and
the bytes go through the pipe as before; so they do when writing to a slot fails (no memory).
"""

from __future__ import annotations

import os


class Slots:
    """``n`` shared-memory files and the ones free to hand out (the writer's side)."""

    def __init__(self, fds: list[int]) -> None:
        self.fds = tuple(fds)
        self.free = list(reversed(fds))

    @classmethod
    def make(cls, n: int) -> Slots | None:
        """``n`` slots, or None where the system has none to give (the pipe is used then)."""
        create = getattr(os, "memfd_create", None)
        if create is None:
            return None
        fds: list[int] = []
        try:
            for _ in range(n):
                fds.append(create("kubetrail-chunk", os.MFD_CLOEXEC))  # type: ignore[attr-defined]
        except OSError:
            for fd in fds:
                os.close(fd)
            return None
        return cls(fds)

    def take(self) -> int:
        return self.free.pop()

    def give_back(self, fd: int) -> None:
        self.free.append(fd)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds, self.free = (), []


def put(fd: int, data: bytes) -> None:
    """``data`` as the whole content of slot ``fd`` (what lay beyond it before is cut off: a slot
    holds no more memory than its last chunk needs)."""
    os.ftruncate(fd, len(data))
    view = memoryview(data)
    at = 0
    while at < len(data):
        at += os.pwrite(fd, view[at:], at)


def get(fd: int, size: int) -> bytes:
    """The ``size`` bytes a ``put`` left in slot ``fd``."""
    data = os.pread(fd, size, 0)
    if len(data) == size:
        return data
    parts = [data]
    at = len(data)
    while at < size:
        more = os.pread(fd, size - at, at)
        if not more:
            raise OSError(f"a shared chunk ended at byte {at} of {size}")
        parts.append(more)
        at += len(more)
    return b"".join(parts)


def send(data: bytes, fd: int | None) -> bytes | int:
    """A worker's result back to the writer: its length once it is in slot ``fd``, else the bytes
    themselves (no slot, or the slot could not take them)."""
    if fd is None:
        return data
    try:
        put(fd, data)
    except OSError:
        return data
    return len(data)


def receive(result: bytes | int, fd: int | None) -> bytes:
    """What ``send`` sent, in the writer."""
    if isinstance(result, bytes):
        return result
    assert fd is not None, "a result sent through a slot, without one"
    return get(fd, result)
