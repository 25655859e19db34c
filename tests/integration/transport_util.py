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
            "sink": {"type": "nats", "url": url, "stream": stream, "subject": subject, "publish_timeout_secs": 2,
                     "connect_timeout_secs": 1}}


def collector_config(tmp: Path, url: str, stream: str, durable: str, data: str = "store",
                     grace: float = 60.0) -> dict[str, Any]:
    return {"data_dir": str(tmp / data), "checkpoint_interval_secs": 0.5,
            "source": {"type": "nats", "url": url, "stream": stream, "durable": durable, "ack_wait_secs": 5,
                       "connect_timeout_secs": 1}}


class Held:
    """What a store holds: audit ids, their counts, seqs per source, loss records."""

    def __init__(self, data_dir: str | Path) -> None:
        path = Path(data_dir) / "kubetrail.db"
        self.rows: list[tuple[str, str, int, str, str]] = []
        if path.exists():
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            try:
                self.rows = conn.execute("SELECT kind, source, seq, audit_id, key FROM entries").fetchall()
            except sqlite3.OperationalError:  # created but not migrated yet
                self.rows = []
            finally:
                conn.close()
        self.ids = Counter(r[3] for r in self.rows if r[0] == "audit")
        self.loss = [r for r in self.rows if r[0] == "loss"]
        self.loss_keys = [r[4] for r in self.loss]

    def report(self, written: set[str]) -> dict[str, int]:
        stored = set(self.ids)
        return {"written": len(written), "stored": len(stored & written), "lost": len(written - stored),
                "duplicated": sum(c - 1 for c in self.ids.values() if c > 1), "invented": len(stored - written)}


class Load:
    """Appends audit lines to ``log`` from a thread, ``rate`` lines per second, ``total`` in all."""

    def __init__(self, log: Path, total: int, rate: float = 1000.0, start: int = 0, run: str = "r") -> None:
        import threading

        self.log, self.total, self.rate, self.start_at, self.run = log, total, rate, start, run
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._write, daemon=True)

    def start(self) -> Load:
        self.thread.start()
        return self

    def _write(self) -> None:
        import time

        chunk = max(1, int(self.rate / 20))
        began = time.monotonic()
        n = 0
        with open(self.log, "ab") as fh:
            while n < self.total:
                k = min(chunk, self.total - n)
                fh.write(audit_lines(self.start_at + n, k, self.run))
                fh.flush()
                n += k
                ahead = n / self.rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
        self.done.set()

    @property
    def written(self) -> set[str]:
        return {f"{self.run}-{i:08d}" for i in range(self.start_at, self.start_at + self.total)}


class InProc:
    """run_agent / run_collector in threads of the test process; ``close()`` stops and joins them."""

    def __init__(self) -> None:
        self.stops: list[Any] = []
        self.threads: list[Any] = []
        self.logs: list[str] = []

    def start(self, fn: Any, config: Any) -> Any:
        import threading

        stop = threading.Event()
        t = threading.Thread(target=fn, args=(config, stop, self.logs.append), daemon=True)
        t.start()
        self.stops.append(stop)
        self.threads.append(t)
        return stop

    def close(self) -> None:
        for s in self.stops:
            s.set()
        for t in self.threads:
            t.join(60)


def kubetrail_proc(*args: str, log: Path) -> Any:
    """``python -m kubetrail ARGS`` as a child process, stderr to ``log``."""
    import subprocess
    import sys

    with open(log, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "kubetrail", *args], stdout=fh, stderr=fh)


def wait_for(cond: Any, secs: float = 60.0) -> bool:
    import time

    end = time.monotonic() + secs
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return bool(cond())


def alerts(data_dir: str | Path, rule: str) -> list[dict[str, Any]]:
    from click.testing import CliRunner

    from kubetrail.cli import cli

    r = CliRunner().invoke(cli, ["alerts", "--json", "--rule", rule, "--data", str(data_dir)])
    assert r.exit_code == 0, r.output
    return [orjson.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def verify_ok(data_dir: str | Path) -> None:
    from click.testing import CliRunner

    from kubetrail.cli import cli

    r = CliRunner().invoke(cli, ["verify", "--data", str(data_dir)])
    assert r.exit_code == 0, r.output


def show(name: str, report: dict[str, int]) -> None:
    """The line every fault test prints (run pytest with -s, or read it in the report on failure)."""
    print(f"{name}: written {report['written']} / stored {report['stored']} / lost {report['lost']} / "
          f"duplicated {report['duplicated']}")
