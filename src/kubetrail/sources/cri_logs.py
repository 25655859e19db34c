"""Container logs from the kubelet's ``/var/log/pods`` (CRI and Docker ``json-file`` lines).

One ``_tail.Tailer`` per ``<restart>.log`` (the audit tailer's machinery: kubelet's rename rotation,
the renamed file read to its end, positions in the store in the same transaction as the lines).
On top of it, this source:

* finds new pods within a second: the root is rescanned every ``poll_ms`` and, where inotify works,
  a change in a watched directory wakes the scan at once;
* joins partial lines (``_cri.Joiner``) and checkpoints no further than the first part of a line
  still being joined, so a restart re-reads the whole line, never half of it;
* reads a rotation the kubelet already gzipped (``0.log.<time>.gz``) when the agent was down for
  two rotations: the saved position names the generation by fingerprint, found again in the .gz;
* drains a deleted pod's files through the open handle before releasing them;
* keys every line by its file identity, offset and content (``_logkey``), so re-reading after a
  crash never stores a line twice.
"""

from __future__ import annotations

import gzip
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Literal

import msgspec
import orjson

from kubetrail.record import LogMeta, Record, SourceRef, printable
from kubetrail.sources._cri import Joiner, Logical, PodPath, parse_line, parse_pod_path
from kubetrail.sources._logkey import log_key
from kubetrail.sources._tail import FP_BYTES, Position, Tailer, _hash_prefix, siblings
from kubetrail.sources._wake import Wake
from kubetrail.stages.redact_lines import RedactLines

log = logging.getLogger("kubetrail.sources.cri_logs")

RecordsCommit = Callable[[list[Record], dict[str, str]], object]
Chunk = tuple[list[bytes], Position]


class CriLogsConfig(msgspec.Struct, tag="cri_logs", tag_field="type", frozen=True, kw_only=True,
                    forbid_unknown_fields=True):
    root: str = "/var/log/pods"
    node: str = ""
    read_from: Literal["beginning", "end"] = "beginning"
    max_line_bytes: int = 65_536
    max_batch_bytes: int = 1_048_576
    poll_ms: int = 250
    inotify: bool = True

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if not os.path.isdir(self.root):
            out.append(("root", f"no such directory {self.root!r}"))
        for name in ("max_line_bytes", "max_batch_bytes", "poll_ms"):
            if getattr(self, name) <= 0:
                out.append((name, "must be greater than 0"))
        return out


class _Watched:
    def __init__(self, path: str, pod: PodPath, tailer: Tailer, max_line_bytes: int) -> None:
        self.path, self.pod, self.tailer = path, pod, tailer
        self.joiner = Joiner(max_line_bytes)
        self.ident: tuple[int, int] | None = None
        self.last_time = 0
        self.catch_up: Iterator[Chunk] | None = None
        self.fps: set[str] = set()  # fingerprints of the generations read from (see _missed_gz)
        self.gz_seen: set[str] = set()


class CriLogsSource:
    def __init__(self, config: CriLogsConfig, cluster: str = "", redact: RedactLines | None = None) -> None:
        self.config = config
        self.cluster = cluster
        self.redact = redact or RedactLines()
        self.files: dict[str, _Watched] = {}
        # One source per root (the node's pod logs): a sealed seq stream and a liveness of its own;
        # the file is in each line's metadata (pod UID, container, restart) and key.
        self.source = SourceRef(cluster=cluster, node=config.node, stream=f"cri-logs:{printable(config.root)}")

    # -- discovery ---------------------------------------------------------------------------
    def discover(self) -> list[tuple[str, PodPath]]:
        """Every ``<n>.log`` under the root (kubelet layout) or every symlink in it (containers layout)."""
        out: list[tuple[str, PodPath]] = []
        try:
            top = list(os.scandir(self.config.root))
        except OSError:
            return out
        for entry in top:
            if entry.name.endswith(".log"):
                pod = parse_pod_path(entry.path)
                if pod is not None:
                    out.append((entry.path, pod))
                continue
            if not entry.is_dir(follow_symlinks=False):
                continue
            try:
                containers = [c for c in os.scandir(entry.path) if c.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            for c in containers:
                try:
                    names = os.listdir(c.path)
                except OSError:
                    continue
                for name in names:
                    if name.endswith(".log") and name[:-4].isdigit():
                        path = os.path.join(c.path, name)
                        pod = parse_pod_path(path)
                        if pod is not None:
                            out.append((path, pod))
        return out

    def _watch_dirs(self, wake: Wake) -> None:
        wake.watch(self.config.root)
        for path in self.files:
            wake.watch(os.path.dirname(path))
            wake.watch(os.path.dirname(os.path.dirname(path)))

    # -- the loop ------------------------------------------------------------------------------
    def run(self, commit: RecordsCommit, load_position: Callable[[str], str | None],
            stop: threading.Event) -> None:
        wake = Wake(self.config.inotify)
        first = True
        try:
            while not stop.is_set():
                for path, pod in self.discover():
                    if path not in self.files:
                        self._add(path, pod, load_position, from_end=first and self.config.read_from == "end")
                first = False
                self._watch_dirs(wake)
                busy = False
                for w in list(self.files.values()):
                    if stop.is_set():
                        break
                    busy |= self._poll_file(w, commit)
                if not busy:
                    wake.wait(self.config.poll_ms / 1000, stop)
        finally:
            wake.close()
            self.close()

    def close(self) -> None:
        for w in self.files.values():
            w.tailer.close()
        self.files.clear()

    def _add(self, path: str, pod: PodPath, load_position: Callable[[str], str | None], from_end: bool) -> None:
        saved = load_position(self.position_key(pod))
        start = Position.loads(saved)
        prefix = os.path.basename(path) + "."
        w = _Watched(path, pod, Tailer(path, start, self.config.max_batch_bytes, from_end=from_end and start is None,
                                       newline_only=True, sibling_prefix=prefix), self.config.max_line_bytes)
        w.catch_up = gz_catch_up(path, prefix, start, self.config.max_batch_bytes, from_end)
        known = _saved_gz(saved)
        # A .gz the saved position did not account for was compressed unseen: _missed_gz reads it
        # (one the catch-up reads is passed over by its fingerprint). Without a list (no position,
        # or an older one), the catch-up and the tailer decide alone.
        w.gz_seen = known if known is not None else set(_gz_names(path))
        self.files[path] = w
        log.debug("watching %s (saved position: %s)", path, start is not None)

    def position_key(self, pod: PodPath) -> str:
        return f"cri_logs:{pod.ident}"

    def _poll_file(self, w: _Watched, commit: RecordsCommit) -> bool:
        busy = False
        # The catch-up, then the tailer (it drains every generation it holds open), then any .gz of a
        # generation it never saw. A crash between the last two is safe: the saved position lists
        # the .gz names accounted for, and a restart reads the others.
        chunks = _chain(w.catch_up or iter(()), w.tailer.poll(), self._missed_gz(w))
        w.catch_up = None
        for lines, pos in chunks:
            busy = True
            self._commit_chunk(w, lines, pos, commit)
        if not busy and not os.path.exists(w.path) and not w.tailer.pending:
            # Deleted (pod gone) and read to the end through the open handle: release it.
            leftover = [self._record(w, line) for line in w.joiner.flush()]
            if leftover:
                commit(leftover, {})
            w.tailer.close()
            del self.files[w.path]
            log.debug("released %s", w.path)
        return busy

    def _commit_chunk(self, w: _Watched, lines: list[bytes], pos: Position, commit: RecordsCommit) -> None:
        records = self._records(w, lines, pos)
        w.fps.add(pos.fp)
        keep = pos.copy()
        pending = w.joiner.pending_start()
        if pending is not None:
            keep.offset = pending
        state = orjson.loads(keep.dumps())
        state["gz"] = sorted(w.gz_seen)
        commit(records, {self.position_key(w.pod): orjson.dumps(state).decode()})

    def _missed_gz(self, w: _Watched) -> Iterator[Chunk]:
        """A generation gzipped before the tailer saw it (two rotations between two polls of a slow
        agent: the middle one was renamed and compressed unseen) is read from its .gz. The names of
        the .gz files accounted for go into the saved position, so a crash cannot forget one."""
        for name in [n for n in _gz_names(w.path) if n not in w.gz_seen]:
            done = w.fps | {fp for _, fp in w.tailer.done}
            w.gz_seen.add(name)
            gz = os.path.join(os.path.dirname(w.path), name)
            yield from _read_gz([gz], Position(-1, -1), self.config.max_batch_bytes, skip=done)

    def _records(self, w: _Watched, lines: list[bytes], pos: Position) -> list[Record]:
        out: list[Record] = []
        ident = (pos.dev, pos.ino)
        if w.ident is not None and ident != w.ident:
            out.extend(self._record(w, line) for line in w.joiner.flush())  # the old file ended mid-line
        w.ident = ident
        offset = pos.start
        for raw in lines:
            done = w.joiner.feed(parse_line(raw), offset)
            offset += len(raw) + 1
            if done is not None:
                out.append(self._record(w, done))
        return out

    def _record(self, w: _Watched, line: Logical) -> Record:
        text, found = self.redact(line.text.decode("utf-8", "replace"))
        body = text.encode()
        if line.time_ns is not None:
            w.last_time = line.time_ns
        when = line.time_ns if line.time_ns is not None else (w.last_time or time.time_ns())
        pod = w.pod
        marks = ["truncated"] if line.truncated else []
        if line.time_ns is None:
            marks.append("unparsed")
        meta = LogMeta(node=self.config.node, namespace=pod.namespace, pod=pod.pod, pod_uid=pod.pod_uid,
                       container=pod.container, container_id=pod.container_id, stream=line.stream,
                       restart=pod.restart, marks=marks)
        return Record(kind="container", key=log_key("container", f"cri:{pod.ident}", line.offset, line.stream,
                                                     line.time_ns, body),
                      time=when, source=self.source,
                      body=body, meta=meta, format="cri", redactions=found)


def _chain(*its: Iterator[Chunk]) -> Iterator[Chunk]:
    for it in its:
        yield from it


def gz_catch_up(path: str, prefix: str, start: Position | None, max_bytes: int,
                from_end: bool = False) -> Iterator[Chunk] | None:
    """When the saved generation is no longer a plain file (the kubelet gzipped it while we were down),
    read it from its .gz at our offset, then every newer .gz whole; the tailer does the plain ones.
    A file never read before (no position) has its gzipped history read too, unless ``from_end``."""
    if start is None:
        start = None if from_end else Position(-1, -1)
    if start is None or (not start.fp_len and start.ino != -1):
        return None
    for p in [*siblings(path, prefix, (".gz", ".tmp")), path] if start.fp_len else []:
        try:
            with open(p, "rb") as fh:
                if start.same_content(fh):  # by content: inode numbers are reused after a prune
                    return None
        except OSError:
            continue
    directory = os.path.dirname(path)
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix) and n.endswith(".gz")]
    except OSError:
        return None
    # Oldest first by name (kubelet's suffix is a sortable time; a .gz's mtime is when it was compressed).
    gzs = [os.path.join(directory, n) for n in sorted(names)]
    return _read_gz(gzs, start, max_bytes)


def _saved_gz(saved: str | None) -> set[str] | None:
    """The .gz names a saved position accounted for (None for a position without the list)."""
    try:
        names = orjson.loads(saved)["gz"] if saved else None
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return {str(n) for n in names} if isinstance(names, list) else None


def _gz_names(path: str) -> list[str]:
    prefix = os.path.basename(path) + "."
    try:
        return sorted(n for n in os.listdir(os.path.dirname(path)) if n.startswith(prefix) and n.endswith(".gz"))
    except OSError:
        return []


def _read_gz(gzs: list[str], start: Position, max_bytes: int, skip: set[str] | frozenset[str] = frozenset(),
             ) -> Iterator[Chunk]:
    """Ours from the saved offset and every later one whole; if ours was pruned already, all of them
    (what was read before is refused by its key). Generations whose fingerprint is in ``skip`` were
    read already and are passed over."""
    found = start.ino == -1 or not any(_holds(gz, start) for gz in gzs)  # -1: never read, all are new
    for gz in gzs:
        try:
            fh = gzip.open(gz, "rb")  # noqa: SIM115 - closed by the with below
            st = os.stat(gz)
        except OSError:
            continue
        with fh:
            try:
                if not found:
                    if not start.same_content(fh):
                        continue
                    found = True
                    pos = start.copy()
                    fh.seek(start.offset)
                else:
                    length = FP_BYTES
                    fp = _hash_prefix(fh, length)
                    if fp is None:
                        fh.seek(0)
                        length = len(fh.read())
                        fh.seek(0)
                        fp = _hash_prefix(fh, length)
                    # mtime 0: a .gz's mtime is when it was compressed, after the newest plain rotation
                    # was last written; a restart from here must still read that rotation.
                    pos = Position(st.st_dev, st.st_ino, fp or "", length, 0, 0)
                    if pos.fp in skip:
                        log.debug("%s: read already (%s in %d)", gz, pos.fp[:8], len(skip))
                        continue
                log.info("reading %s (gzipped while we were away) from offset %d", gz, pos.offset)
                yield from _gz_chunks(fh, pos, max_bytes)
            except (OSError, EOFError) as exc:  # a .gz the kubelet is still writing, or damaged
                log.warning("cannot read %s: %s", gz, exc)


def _holds(gz: str, start: Position) -> bool:
    try:
        with gzip.open(gz, "rb") as fh:
            return start.same_content(fh)
    except (OSError, EOFError):
        return False


def _gz_chunks(fh: gzip.GzipFile, pos: Position, max_bytes: int) -> Iterator[Chunk]:
    buf = b""
    while True:
        chunk = fh.read(max_bytes)
        if not chunk:
            if buf:
                start = pos.offset
                pos.offset += len(buf)
                yield [buf], pos.copy(start)
            return
        data = buf + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            buf = data
            continue
        whole, buf = data[:cut + 1], data[cut + 1:]
        start = pos.offset
        pos.offset += len(whole)
        yield whole[:-1].split(b"\n"), pos.copy(start)
