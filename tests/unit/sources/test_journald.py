"""journald: real journal files (written by systemd-journal-remote), cursor resume, unit filters."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from kubetrail.record import Record
from kubetrail.sources.journald import JournaldConfig, JournaldSource
from kubetrail.testing import JOURNAL_REMOTE, write_journal

pytestmark = pytest.mark.integration
if not (os.path.exists(JOURNAL_REMOTE) and shutil.which("journalctl")):
    if os.environ.get("CI"):
        raise RuntimeError("CI needs systemd-journal-remote and journalctl (apt-get install systemd-journal-remote)")
    pytest.skip("systemd-journal-remote/journalctl not installed", allow_module_level=True)

BOOT = "b" * 32
T0 = 1_714_557_600_000_000  # µs


def entry(i: int, message: str, **fields: str) -> dict[str, str | bytes]:
    return {"__REALTIME_TIMESTAMP": str(T0 + i * 1000), "__MONOTONIC_TIMESTAMP": str(1000 + i), "_BOOT_ID": BOOT,
            "_HOSTNAME": "node-a", "PRIORITY": "6", "MESSAGE": message, **fields}


def collect(src: JournaldSource, positions: dict[str, str], want: int) -> list[Record]:
    got: list[Record] = []

    def commit(records: list[Record], pos: dict[str, str]) -> None:
        got.extend(records)
        positions.update(pos)

    stop = threading.Event()
    t = threading.Thread(target=src.run, args=(commit, positions.get, stop))
    t.start()
    deadline = time.monotonic() + 10
    while len(got) < want and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # nothing more may arrive
    stop.set()
    t.join(10)
    return got


def test_units_kernel_and_sudo_read_and_resumed_after_the_cursor(tmp_path: Path) -> None:
    """Default filters keep kubelet/sudo/kernel and drop others; a restart resumes after the stored cursor."""
    jdir = tmp_path / "journal"
    jdir.mkdir()
    write_journal(str(jdir / "one.journal"), [
        entry(0, "kubelet started", _SYSTEMD_UNIT="kubelet.service", SYSLOG_IDENTIFIER="kubelet"),
        entry(1, "noise", _SYSTEMD_UNIT="cron.service", SYSLOG_IDENTIFIER="cron"),
        entry(2, "bob : COMMAND=/bin/cat /etc/shadow password=hunter2", SYSLOG_IDENTIFIER="sudo"),
        entry(3, "oom-kill: task=nginx", _TRANSPORT="kernel", PRIORITY="3"),
        entry(4, "multi\nline", _SYSTEMD_UNIT="containerd.service"),
    ])
    positions: dict[str, str] = {}
    src = JournaldSource(JournaldConfig(directory=str(jdir), node="node-a"))
    got = collect(src, positions, 4)
    assert [(r.log().unit, r.event()["MESSAGE"]) for r in got] == [
        ("kubelet.service", "kubelet started"),
        ("sudo", "bob : COMMAND=/bin/cat /etc/shadow password=[redacted]"),
        ("kernel", "oom-kill: task=nginx"),
        ("containerd.service", "multi\nline"),
    ]
    assert got[2].log().stream == "err" and got[0].time == T0 * 1000 and got[0].kind == "node"
    assert all(b"hunter2" not in r.body for r in got)
    assert positions[src.position_key].startswith("s=")

    write_journal(str(jdir / "two.journal"), [entry(10, "kubelet again", _SYSTEMD_UNIT="kubelet.service")])
    again = collect(JournaldSource(JournaldConfig(directory=str(jdir), node="node-a")), positions, 1)
    assert [r.event()["MESSAGE"] for r in again] == ["kubelet again"]


def test_same_entry_has_the_same_key_on_every_read(tmp_path: Path) -> None:
    """Reading a journal twice from the start gives the same keys (the store refuses the second copy)."""
    f = tmp_path / "a.journal"
    write_journal(str(f), [entry(0, "x", _SYSTEMD_UNIT="kubelet.service")])
    cfg = JournaldConfig(files=[str(f)], units=[], identifiers=[], kernel=False)
    a = collect(JournaldSource(cfg), {}, 1)
    b = collect(JournaldSource(cfg), {}, 1)
    assert [r.key for r in a] == [r.key for r in b] and len(a) == 1
