"""A writer rotates the audit log 20 times (rename and copytruncate mixed) while `kubetrail run`
is killed with SIGKILL and restarted at random moments: every line is stored exactly once."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from kubetrail.testing import make_event

pytestmark = [pytest.mark.slow, pytest.mark.integration]

LINES = 3000
ROTATIONS = 20


def kubetrail_cmd() -> list[str]:
    return [sys.executable, "-m", "kubetrail"]


def writer(log: Path, stop: threading.Event, rng: random.Random) -> None:
    per_rotation = LINES // (ROTATIONS + 1)
    n = 0
    rotation = 0
    fh = open(log, "ab")  # noqa: SIM115
    while n < LINES:
        ev = make_event(f"evt-{n:06d}", time=f"2024-05-01T10:{n // 60 % 60:02d}:{n % 60:02d}.000000Z")
        data = orjson.dumps(ev) + b"\n"
        if rng.random() < 0.05:  # sometimes flush half a line first: readers must wait for the newline
            fh.write(data[:50])
            fh.flush()
            time.sleep(0.002)
            fh.write(data[50:])
        else:
            fh.write(data)
        fh.flush()
        n += 1
        if n % per_rotation == 0 and rotation < ROTATIONS:
            rotation += 1
            rotated = log.with_name(f"audit.log.{rotation}")
            if rotation % 2:
                fh.close()
                os.rename(log, rotated)
                fh = open(log, "ab")  # noqa: SIM115
            else:
                shutil.copyfile(log, rotated)
                fh.truncate(0)
                fh.seek(0)
        if n % 10 == 0:  # ~150 ms between rotations: a reader polling every 20 ms sees each file
            time.sleep(0.01)
    fh.close()
    stop.set()


def test_rotation_and_sigkill_store_every_line_once(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.touch()
    data = tmp_path / "data"
    cfg = tmp_path / "kubetrail.yaml"
    cfg.write_text(f"data_dir: {data}\ncheckpoint_interval_secs: 0.5\nsources:\n"
                   f"  - type: audit_file\n    path: {log}\n    poll_ms: 20\n    max_batch_bytes: 65536\n")
    rng = random.Random(7)
    done = threading.Event()
    t = threading.Thread(target=writer, args=(log, done, rng))
    t.start()
    kills = 0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    while not done.is_set() or kills < 5:
        proc = subprocess.Popen([*kubetrail_cmd(), "run", "--config", str(cfg)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.4, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    t.join()
    # A final clean run drains everything, then SIGTERM must flush and exit 0.
    errlog = open(tmp_path / "run.err", "wb")  # noqa: SIM115
    proc = subprocess.Popen([*kubetrail_cmd(), "run", "--config", str(cfg)], env=env,
                            stdout=subprocess.DEVNULL, stderr=errlog)
    deadline = time.time() + 60
    count = 0
    while time.time() < deadline:
        time.sleep(0.5)
        try:
            with sqlite3.connect(data / "kubetrail.db") as conn:
                count = conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        except sqlite3.Error:
            continue
        if count >= LINES:
            break
    started = time.time() + 30  # SIGTERM before the handler is installed would just kill it
    while time.time() < started and b"kubetrail run:" not in (tmp_path / "run.err").read_bytes():
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=30)
    errlog.close()
    assert rc == 0, (tmp_path / "run.err").read_text()
    with sqlite3.connect(data / "kubetrail.db") as conn:
        ids = [r[0] for r in conn.execute("SELECT audit_id FROM entries")]
    assert kills >= 5
    assert len(ids) == len(set(ids)), "an event was stored twice"
    assert sorted(ids) == [f"evt-{i:06d}" for i in range(LINES)], f"missing: {LINES - len(set(ids))}"
