"""③ The node's durable hand-off: ``Wal`` (append, read, ack, release, status) and its config.

Layout: ``wal.py`` (the on-disk format in its docstring, the writer and the reader), ``frames.py``
(bytes), ``recovery.py`` (start-up scan, quarantine), ``policy.py`` (when full, loss records).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Literal

import msgspec

if TYPE_CHECKING:
    from kubetrail.buffer.frames import SealPoint
    from kubetrail.buffer.policy import LOSS_KIND, WhenFull
    from kubetrail.buffer.wal import Wal, WalEntry, WalStatus, inspect

# Where each name of the WAL lives. They load at first use (PEP 562 ``__getattr__`` below): the config
# needs ``BufferConfig`` in every command, but only the agent opens a WAL, and ``frames.py``'s
# ``crc32c`` (with the ``importlib.metadata`` its ``__init__`` reads its version from) costs ~15 ms of
# start-up that ``kubetrail ingest``, ``query`` and the rest would otherwise pay for nothing.
_LAZY = {"SealPoint": "frames", "LOSS_KIND": "policy", "WhenFull": "policy", "Wal": "wal", "WalEntry": "wal",
         "WalStatus": "wal", "inspect": "wal"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups are plain module attributes
    return value


class BufferConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``buffer:`` in the agent's config. ``dir`` defaults to ``<data_dir>/buffer``."""

    dir: str = ""
    max_bytes: int = 1 << 30
    when_full: Literal["block", "drop_oldest"] = "block"
    segment_bytes: int = 0  # 0: max_bytes / 8, between 64 KiB and 64 MiB
    block_timeout_secs: float = 10.0  # how long a webhook request waits for room before a 503

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.max_bytes < 1 << 20:
            out.append(("max_bytes", "must be at least 1048576 (1 MiB)"))
        if self.segment_bytes and not 64 << 10 <= self.segment_bytes <= self.max_bytes // 4:
            out.append(("segment_bytes", "must be between 65536 and max_bytes / 4"))
        if self.block_timeout_secs <= 0:
            out.append(("block_timeout_secs", "must be greater than 0"))
        return out

    def open(self, default_dir: str) -> Wal:
        from kubetrail.buffer.wal import Wal

        return Wal(self.dir or default_dir, self.max_bytes, self.when_full, self.segment_bytes)


__all__ = ["LOSS_KIND", "BufferConfig", "SealPoint", "Wal", "WalEntry", "WalStatus", "WhenFull", "inspect"]
