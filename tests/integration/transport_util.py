"""Helpers for the transport tests: audit log writers, agent/collector configs, what the store holds."""

from __future__ import annotations

import sqlite3
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import yaml

from kubetrail.testing import make_event


def audit_lines(start: int, n: int, run: str = "r") -> bytes:
    out = []
    for i in range(start, start + n):
        t = f"2024-05-01T{10 + i // 3600 % 10:02d}:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:06d}Z"
        out.append(orjson.dumps(make_event(f"{run}-{i:08d}", time=t, name=f"pod-{i}")))
    return b"\n".join(out) + b"\n"


def names(prefix: str = "T") -> tuple[str, str, str]:
    """A stream, subject and durable of its own for each test (tests share one server)."""
    tag = uuid.uuid4().hex[:8]
    return f"{prefix}{tag}", f"kt.{tag}.records", f"col{tag}"


def write_config(path: Path, doc: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def agent_config(tmp: Path, url: str, stream: str, subject: str, log: Path, **buffer: Any) -> dict[str, Any]:
    return {"data_dir": str(tmp / "agent"), "cluster": "c1",
            "sources": [{"type": "audit_file", "path": str(log), "node": "node-a", "poll_ms": 20}],
            "buffer": {"dir": str(tmp / "agent" / "wal"), "max_bytes": 64 << 20, **buffer},
            "sink": {"type": "nats", "url": url, "stream": stream, "subject": subject, "publish_timeout_secs": 2}}


def collector_config(tmp: Path, url: str, stream: str, durable: str, data: str = "store",
                     grace: float = 60.0) -> dict[str, Any]:
    return {"data_dir": str(tmp / data), "checkpoint_interval_secs": 0.5,
            "source": {"type": "nats", "url": url, "stream": stream, "durable": durable, "ack_wait_secs": 5}}


class Held:
    """What a store holds: audit ids, their counts, seqs per source, loss records."""

    def __init__(self, data_dir: str | Path) -> None:
        path = Path(data_dir) / "kubetrail.db"
        self.rows: list[tuple[str, str, int, str]] = []
        if path.exists():
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            try:
                self.rows = conn.execute("SELECT kind, source, seq, audit_id FROM entries").fetchall()
            except sqlite3.OperationalError:  # created but not migrated yet
                self.rows = []
            finally:
                conn.close()
        self.ids = Counter(r[3] for r in self.rows if r[0] == "audit")
        self.loss = [r for r in self.rows if r[0] == "loss"]

    def report(self, written: set[str]) -> dict[str, int]:
        stored = set(self.ids)
        return {"written": len(written), "stored": len(stored & written), "lost": len(written - stored),
                "duplicated": sum(c - 1 for c in self.ids.values() if c > 1), "invented": len(stored - written)}
