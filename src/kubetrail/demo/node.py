"""A simulated Kubernetes node: writes container logs exactly as containerd and the kubelet do.

For tests, the benchmark and the demo (no kubelet runs here). What it reproduces:

* the layout ``<root>/<ns>_<pod>_<uid>/<container>/<restart>.log``;
* CRI lines ``<RFC3339Nano> <stream> <P|F> <text>``, a line longer than ``partial_bytes`` split into
  ``P`` parts and a final ``F`` (containerd's ``max_container_log_line_size``), stdout and stderr
  interleaved in one file, each ``write`` appended with one ``write(2)`` like the runtime's writer;
* kubelet rotation (``container_log_manager.go``): rotations beyond ``max_files - 2`` removed, every
  rotated file but the newest gzipped through ``<file>.tmp`` then renamed to ``<file>.gz``, then
  ``N.log`` renamed to ``N.log.<YYYYmmdd-HHMMSS>`` and a new ``N.log`` opened (ReopenContainerLog);
* a container restart (``N+1.log``) and a pod deletion (its directory removed).

Every full line written is remembered in ``written`` (uid, container, stream, text) so a test can
check that the agent stored each exactly once.
"""

from __future__ import annotations

import gzip
import os
import shutil
import time
from dataclasses import dataclass, field


def rfc3339nano(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


@dataclass
class _Container:
    directory: str
    restart: int = 0
    rotations: int = 0
    fh: object = None

    @property
    def path(self) -> str:
        return os.path.join(self.directory, f"{self.restart}.log")


@dataclass
class SimNode:
    root: str
    name: str = "node-a"
    partial_bytes: int = 16_384
    max_files: int = 5
    clock_ns: int = 1_714_557_600_000_000_000  # 2024-05-01T10:00:00Z, advanced 1 ms per line
    pods: dict[str, dict[str, _Container]] = field(default_factory=dict)
    pod_dirs: dict[str, str] = field(default_factory=dict)
    written: list[tuple[str, str, str, str]] = field(default_factory=list)

    def start_pod(self, namespace: str, pod: str, uid: str, containers: list[str]) -> None:
        d = os.path.join(self.root, f"{namespace}_{pod}_{uid}")
        self.pod_dirs[uid] = d
        self.pods[uid] = {}
        for c in containers:
            cdir = os.path.join(d, c)
            os.makedirs(cdir, exist_ok=True)
            self.pods[uid][c] = _Container(cdir)
            open(self.pods[uid][c].path, "ab").close()

    def tick(self) -> int:
        self.clock_ns += 1_000_000
        return self.clock_ns

    def write(self, uid: str, container: str, text: str, stream: str = "stdout") -> None:
        """One logical line (no newline inside), split into P parts as containerd does."""
        c = self.pods[uid][container]
        data = text.encode()
        out = bytearray()
        pieces = [data[i:i + self.partial_bytes] for i in range(0, len(data), self.partial_bytes)] or [b""]
        for i, piece in enumerate(pieces):
            tag = "F" if i == len(pieces) - 1 else "P"
            out += f"{rfc3339nano(self.tick())} {stream} {tag} ".encode() + piece + b"\n"
        with open(c.path, "ab") as fh:
            fh.write(out)
        self.written.append((uid, container, stream, text))

    def write_torn(self, uid: str, container: str, first: str, rest: str, stream: str = "stdout") -> None:
        """A P part now and its F part in a separate write (the agent may read between the two)."""
        c = self.pods[uid][container]
        with open(c.path, "ab") as fh:
            fh.write(f"{rfc3339nano(self.tick())} {stream} P ".encode() + first.encode() + b"\n")
        with open(c.path, "ab") as fh:
            fh.write(f"{rfc3339nano(self.tick())} {stream} F ".encode() + rest.encode() + b"\n")
        self.written.append((uid, container, stream, first + rest))

    def rotate(self, uid: str, container: str) -> None:
        c = self.pods[uid][container]
        prefix = f"{c.restart}.log."
        rotated = sorted(n for n in os.listdir(c.directory) if n.startswith(prefix) and not n.endswith(".tmp"))
        while len(rotated) > max(self.max_files - 2, 0):
            os.remove(os.path.join(c.directory, rotated.pop(0)))
        for n in rotated:
            if not n.endswith(".gz"):
                src = os.path.join(c.directory, n)
                with open(src, "rb") as fin, gzip.open(src + ".tmp", "wb") as fout:
                    shutil.copyfileobj(fin, fout)
                os.rename(src + ".tmp", src + ".gz")
                os.remove(src)
        c.rotations += 1
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self.clock_ns // 1_000_000_000 + c.rotations))
        os.rename(c.path, f"{c.path}.{stamp}")
        open(c.path, "ab").close()

    def restart(self, uid: str, container: str) -> None:
        c = self.pods[uid][container]
        c.restart += 1
        open(c.path, "ab").close()

    def delete_pod(self, uid: str) -> None:
        shutil.rmtree(self.pod_dirs.pop(uid))
        del self.pods[uid]
