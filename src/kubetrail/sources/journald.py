"""Node logs from the systemd journal: ``journalctl --output=json --follow --after-cursor=<C>``.

A ``journalctl`` child process does the reading (no binding to libsystemd needed; ``--directory`` or
``--file`` read a node's journal mounted into the pod). Entries are committed in batches together
with the cursor of the last one, so a restart resumes right after what the store holds.

By default only what matters for security on a Kubernetes node is read: the kubelet, the container
runtimes, sshd, sudo and the kernel (``units``, ``identifiers``, ``kernel``); empty filters read all.
Every string field is redacted (a command line can hold a password too).
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec
import orjson

from kubetrail.record import LogMeta, Record, Redaction, SourceRef
from kubetrail.sources._logkey import log_key
from kubetrail.stages.redact_lines import RedactLines

log = logging.getLogger("kubetrail.sources.journald")
RecordsCommit = Callable[[list[Record], dict[str, str]], object]
DEFAULT_UNITS = ("kubelet.service", "containerd.service", "crio.service", "docker.service", "ssh.service",
                 "sshd.service")
DEFAULT_IDENTIFIERS = ("sudo", "sshd", "su")
PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


class JournaldConfig(msgspec.Struct, tag="journald", tag_field="type", frozen=True, kw_only=True,
                     forbid_unknown_fields=True):
    directory: str = ""
    files: list[str] = []
    units: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_UNITS))
    identifiers: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_IDENTIFIERS))
    kernel: bool = True
    node: str = ""
    read_from: Literal["beginning", "end"] = "beginning"
    journalctl: str = "journalctl"
    max_batch: int = 1000
    flush_ms: int = 200

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.directory and not os.path.isdir(self.directory):
            out.append(("directory", f"no such directory {self.directory!r}"))
        if self.directory and self.files:
            out.append(("files", "give directory or files, not both"))
        if self.max_batch <= 0 or self.flush_ms <= 0:
            out.append(("max_batch", "max_batch and flush_ms must be greater than 0"))
        return out

    def matches(self) -> list[str]:
        """journalctl match terms, all OR-ed with ``+`` (an empty list reads everything)."""
        terms = [f"_SYSTEMD_UNIT={u}" for u in self.units] + [f"SYSLOG_IDENTIFIER={i}" for i in self.identifiers]
        if self.kernel:
            terms.append("_TRANSPORT=kernel")
        out: list[str] = []
        for t in terms:
            out += ["+", t] if out else [t]
        return out


class JournaldSource:
    def __init__(self, config: JournaldConfig, cluster: str = "", redact: RedactLines | None = None) -> None:
        self.config = config
        self.cluster = cluster
        self.redact = redact or RedactLines()
        where = self.config.directory or ",".join(self.config.files) or "system"
        self.position_key = f"journald:{where}"
        self.source = SourceRef(cluster=cluster, node=config.node, stream=f"journald:{where}")

    def command(self, cursor: str | None) -> list[str]:
        c = self.config
        cmd = [c.journalctl, "--output=json", "--follow", "--no-pager", "--all"]
        if c.directory:
            cmd.append(f"--directory={c.directory}")
        cmd += [f"--file={f}" for f in c.files]
        if cursor:
            cmd += [f"--after-cursor={cursor}", "--no-tail"]
        else:
            cmd.append("--no-tail" if c.read_from == "beginning" else "--lines=0")
        return cmd + c.matches()

    def run(self, commit: RecordsCommit, load_position: Callable[[str], str | None], stop: threading.Event) -> None:
        cmd = self.command(load_position(self.position_key))
        log.debug("starting %s", " ".join(cmd))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buf = b""
        pending: list[Record] = []
        cursor = ""
        since = 0.0
        try:
            while not stop.is_set():
                ready, _, _ = select.select([fd], [], [], self.config.flush_ms / 1000)
                if ready:
                    data = os.read(fd, 1 << 20)
                    if not data:
                        err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                        raise RuntimeError(f"journalctl exited {proc.wait()}: {err[-300:]}")
                    buf += data
                    *lines, buf = buf.split(b"\n")
                    since = since or time.monotonic()
                    for line in lines:
                        rec, cur = self.to_record(line)
                        if rec is not None:
                            pending.append(rec)
                        cursor = cur or cursor
                    if len(pending) < self.config.max_batch and \
                            time.monotonic() - since < self.config.flush_ms / 1000:
                        continue
                if pending or cursor:
                    commit(pending, {self.position_key: cursor} if cursor else {})
                    pending, cursor, since = [], "", 0.0
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()

    def to_record(self, line: bytes) -> tuple[Record | None, str]:
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None, ""
        if not isinstance(entry, dict):
            return None, ""
        cursor = str(entry.get("__CURSOR") or "")
        found: list[Redaction] = []
        for k, v in list(entry.items()):
            if isinstance(v, list) and all(isinstance(b, int) for b in v):  # a binary field
                v = entry[k] = bytes(b & 0xFF for b in v).decode("utf-8", "replace")
            if isinstance(v, str) and not k.startswith("__"):
                entry[k], more = self.redact(v, k)
                found += more
        try:
            when = int(entry.get("__REALTIME_TIMESTAMP", 0)) * 1000
        except ValueError:
            when = 0
        body = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
        unit = _unit(entry)
        try:
            prio = PRIORITIES[int(entry.get("PRIORITY", 6))]
        except (ValueError, IndexError):
            prio = ""
        meta = LogMeta(node=self.config.node or str(entry.get("_HOSTNAME") or ""), unit=unit, stream=prio)
        return Record(kind="node", key=log_key("node", f"journald:{cursor}", 0, "", when, body), time=when,
                      source=self.source, body=body, meta=meta, format="journald", redactions=found), cursor


def _unit(entry: dict[str, Any]) -> str:
    if entry.get("_TRANSPORT") == "kernel":
        return "kernel"
    return str(entry.get("_SYSTEMD_UNIT") or entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM") or "")
