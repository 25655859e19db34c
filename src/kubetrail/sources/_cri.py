"""Container log lines as the kubelet and the runtimes write them (private to ``cri_logs``).

Layout (kubelet ``pkg/kubelet/kuberuntime``)::

    /var/log/pods/<namespace>_<pod>_<pod-uid>/<container>/<restart>.log     (+ <restart>.log.<time>[.gz])
    /var/log/containers/<pod>_<namespace>_<container>-<container-id>.log    symlink to the file above

Line formats:

* CRI (containerd, CRI-O): ``<RFC3339Nano> <stdout|stderr> <tags> <text>\\n``; the first tag is ``P``
  (partial: the runtime split a long line, more follows) or ``F`` (full / last part).
* Docker ``json-file``: ``{"log": "<text>[\\n]", "stream": "stdout", "time": "<RFC3339Nano>"}``; a
  ``log`` without a trailing newline is a partial part (dockerd splits at 16 KiB).

Partial parts are joined per stream (stdout and stderr parts interleave in one file), up to
``max_line_bytes``: past that the text is cut, the rest of the parts are skipped, and the line is
marked ``truncated`` with a visible marker, so a runaway writer never holds unbounded memory.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

import orjson

from kubetrail.stages.extract import parse_time_ns

_UID = r"[0-9a-fA-F-]{1,64}"
_POD_DIR = re.compile(rf"^(?P<ns>[a-z0-9][a-z0-9.-]*)_(?P<pod>[a-z0-9][a-z0-9.-]*)_(?P<uid>{_UID}|[^_/]+)$")
_LOG_NAME = re.compile(r"^(?P<n>\d+)\.log$")
_CONTAINERS_NAME = re.compile(r"^(?P<pod>[^_]+)_(?P<ns>[^_]+)_(?P<container>.+)-(?P<id>[0-9a-f]{64})\.log$")
TRUNCATED_MARKER = " [kubetrail: line cut at max_line_bytes, {n} bytes dropped]"


class PodPath(NamedTuple):
    """What a log file's path says: enough to store the line when the API server knows nothing."""

    namespace: str
    pod: str
    pod_uid: str
    container: str
    restart: int
    container_id: str = ""

    @property
    def ident(self) -> str:
        """``<ns>_<pod>_<uid>/<container>/<n>.log``: the file's identity, stable across rotation."""
        return f"{self.namespace}_{self.pod}_{self.pod_uid}/{self.container}/{self.restart}.log"


def parse_pod_path(path: str) -> PodPath | None:
    """The kubelet path of ``path`` (following a /var/log/containers symlink), or None."""
    parts = os.path.normpath(path).split(os.sep)
    if len(parts) >= 3:
        m, n = _POD_DIR.match(parts[-3]), _LOG_NAME.match(parts[-1])
        if m and n:
            return PodPath(m["ns"], m["pod"], m["uid"], parts[-2], int(n["n"]))
    c = _CONTAINERS_NAME.match(os.path.basename(path))
    if c:
        target = parse_pod_path(os.path.realpath(path)) if os.path.islink(path) else None
        if target is not None:
            return target._replace(container_id=c["id"])
        return PodPath(c["ns"], c["pod"], "", c["container"], 0, c["id"])
    return None


class Part(NamedTuple):
    time_ns: int | None
    stream: str
    partial: bool
    text: bytes


def parse_line(line: bytes) -> Part:
    """One physical line. What is neither format is kept whole, with stream "" and no time."""
    if line[:1] == b"{":
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("log"), str):
            text = doc["log"].encode("utf-8", "surrogatepass")
            partial = not text.endswith(b"\n")
            return Part(parse_time_ns(doc.get("time")), str(doc.get("stream") or ""), partial,
                        text if partial else text[:-1])
    fields = line.split(b" ", 3)
    if len(fields) >= 3 and fields[1] in (b"stdout", b"stderr"):
        t = parse_time_ns(fields[0].decode("ascii", "replace"))
        tag = fields[2].split(b":", 1)[0]
        if t is not None and tag in (b"P", b"F"):
            return Part(t, fields[1].decode(), tag == b"P", fields[3] if len(fields) == 4 else b"")
    return Part(None, "", False, line)


class Logical(NamedTuple):
    """A joined line: where its first part started, the first part's time, and the text."""

    offset: int
    time_ns: int | None
    stream: str
    text: bytes
    truncated: bool
    raw_len: int


class _Run:
    __slots__ = ("dropped", "offset", "parts", "size", "time_ns")

    def __init__(self, offset: int, time_ns: int | None) -> None:
        self.offset, self.time_ns, self.parts, self.size, self.dropped = offset, time_ns, [], 0, 0


class Joiner:
    """Joins P…P F runs per stream. ``pending_start()`` is the offset a checkpoint may not pass."""

    def __init__(self, max_line_bytes: int) -> None:
        self.max = max_line_bytes
        self.runs: dict[str, _Run] = {}

    def feed(self, part: Part, offset: int) -> Logical | None:
        run = self.runs.get(part.stream)
        if run is None:
            if not part.partial and len(part.text) <= self.max:
                return Logical(offset, part.time_ns, part.stream, part.text, False, len(part.text))
            run = self.runs[part.stream] = _Run(offset, part.time_ns)
        room = self.max - run.size
        if room > 0:
            run.parts.append(part.text[:room])
            run.size += min(room, len(part.text))
        run.dropped += max(0, len(part.text) - max(room, 0))
        if part.partial:
            return None
        del self.runs[part.stream]
        return self._finish(run)._replace(stream=part.stream)

    def _finish(self, run: _Run) -> Logical:
        text = b"".join(run.parts)
        if run.dropped:
            text += TRUNCATED_MARKER.format(n=run.dropped).encode()
        return Logical(run.offset, run.time_ns, "", text, run.dropped > 0, run.size + run.dropped)

    def pending_start(self) -> int | None:
        return min((r.offset for r in self.runs.values()), default=None)

    def flush(self) -> list[Logical]:
        """Runs whose file ended without their ``F`` part (a rotation mid-line): emitted as they are."""
        out = [self._finish(r)._replace(stream=s) for s, r in sorted(self.runs.items())]
        self.runs.clear()
        return out
