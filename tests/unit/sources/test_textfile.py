"""textfile: plain node logs through the audit tailer, with times, keys and redaction."""

from __future__ import annotations

import os
from pathlib import Path

from kubetrail.record import Record
from kubetrail.sources._tail import Position, Tailer
from kubetrail.sources.textfile import TextfileConfig, TextfileSource, line_time


def read(src: TextfileSource, positions: dict[str, str]) -> list[Record]:
    out: list[Record] = []
    tailer = Tailer(src.config.path, Position.loads(positions.get(src.position_key)), newline_only=True)
    try:
        for lines, pos in tailer.poll():
            out += src.records(lines, pos)
            positions[src.position_key] = pos.dumps()
    finally:
        tailer.close()
    return out


def test_times_from_rfc3339_and_syslog_stamps() -> None:
    """A line's own time is used when it starts with one."""
    now = 1_714_557_600_000_000_000
    assert line_time("2024-05-01T10:00:01.5Z kube-proxy: synced", now) == now + 1_500_000_000
    assert line_time("May  1 10:00:02 node-a sshd[1]: Accepted publickey", now) == now + 2_000_000_000
    assert line_time("no time here", now) is None


def test_lines_rotation_and_resume_keep_each_line_once(tmp_path: Path) -> None:
    """Rename rotation between reads loses nothing; keys are stable across a re-read from scratch."""
    log = tmp_path / "auth.log"
    log.write_text("May  1 10:00:00 node-a sshd[1]: Accepted password for root\n"
                   "May  1 10:00:01 node-a sudo: bob : token=abcdef123 COMMAND=/bin/sh\n")
    src = TextfileSource(TextfileConfig(path=str(log), node="node-a"))
    positions: dict[str, str] = {}
    first = read(src, positions)
    assert [r.log().unit for r in first] == ["auth.log", "auth.log"]
    assert b"abcdef123" not in first[1].body and first[1].redactions
    with open(log, "a") as fh:
        fh.write("May  1 10:00:02 node-a sshd[1]: session closed\n")
    os.rename(log, tmp_path / "auth.log.1")
    log.write_text("May  1 10:00:03 node-a sshd[2]: new file\n")
    second = read(src, positions)
    assert [r.body.split(b": ", 1)[1] for r in second] == [b"session closed", b"new file"]
    again = read(TextfileSource(TextfileConfig(path=str(log), node="node-a")), {})
    assert {r.key for r in again} <= {r.key for r in first + second}
