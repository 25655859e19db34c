"""Follow the kube-apiserver audit log (``--audit-log-path``) live.

Rotation, truncation and restarts are handled by ``_tail.Tailer``; this module turns the lines into
records and commits them together with the file position, so the position can never run ahead of
what the store holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal

import msgspec

from kubetrail.record import Decoded, Rejected, SourceRef
from kubetrail.sources._tail import Position, Tailer
from kubetrail.sources.formats import decode_line

Commit = Callable[[list[Decoded], list[Rejected], SourceRef, dict[str, str]], None]


class AuditFileConfig(msgspec.Struct, tag="audit_file", tag_field="type", frozen=True, kw_only=True,
                      forbid_unknown_fields=True):
    path: str = "/var/log/kubernetes/audit/audit.log"
    read_from: Literal["beginning", "end"] = "beginning"
    max_batch_bytes: int = 1_048_576
    poll_ms: int = 250
    node: str = ""


class AuditFileSource:
    def __init__(self, config: AuditFileConfig, cluster: str = "") -> None:
        self.config = config
        self.position_key = f"audit_file:{config.path}"
        self.source = SourceRef(cluster=cluster, node=config.node, stream=f"audit-file:{config.path}")

    def run(self, commit: Commit, load_position: Callable[[str], str | None], stop: threading.Event) -> None:
        """Poll until ``stop`` is set; every chunk is committed before the next is read."""
        start = Position.loads(load_position(self.position_key))
        tailer = Tailer(self.config.path, start, self.config.max_batch_bytes,
                        from_end=self.config.read_from == "end")
        try:
            while not stop.is_set():
                idle = self.poll_once(tailer, commit)
                if idle:
                    stop.wait(self.config.poll_ms / 1000)
        finally:
            tailer.close()

    def poll_once(self, tailer: Tailer, commit: Commit) -> bool:
        idle = True
        for lines, pos in tailer.poll():
            idle = False
            decoded: list[Decoded] = []
            rejected: list[Rejected] = []
            where = f"{self.config.path}@{pos.offset}"
            for i, line in enumerate(lines):
                for item in decode_line(line, f"{where}#{i}"):
                    (decoded if isinstance(item, Decoded) else rejected).append(item)
            commit(decoded, rejected, self.source, {self.position_key: pos.dumps()})
        return idle
